import assert from "node:assert/strict";
import { fakeResult } from "./testing.ts";
import { Metrics } from "./metrics.ts";

const value = async (m: Metrics, pattern: RegExp) => {
  const line = (await m.registry.metrics()).split("\n").find((l) => pattern.test(l));
  return line ? Number(line.split(" ").at(-1)) : NaN;
};

Deno.test("metrics: queue gauges read the engine's counts when scraped", async () => {
  let counts = { running: 1, waiting: 3 };
  const m = new Metrics("m", () => counts);
  assert.equal(await value(m, /^vllm:num_requests_waiting\{/), 3);
  counts = { running: 0, waiting: 0 };
  assert.equal(await value(m, /^vllm:num_requests_running\{/), 0);
});

Deno.test("metrics: a finished request counts its images, pixels, stages and reason", async () => {
  const m = new Metrics("m", () => ({ running: 0, waiting: 0 }));
  const result = fakeResult({ prompt: "x", width: 16, height: 8, n: 2 });
  m.observer.requestFinished!("stop", { queue: 0.1, e2e: 0.5 }, result);
  m.observer.requestFinished!("abort", { queue: 0.2, e2e: 0.2 });
  m.observer.batchStarted!(1, 2);
  m.observer.nonFiniteOutput!("latents");
  m.encoded(12);
  m.modelLoaded(1.5);
  m.httpRequest("POST", "/v1/images/generations", 200);
  assert.equal(await value(m, /^vllm:request_success_total\{.*finished_reason="stop"/), 1);
  assert.equal(await value(m, /^vllm:request_success_total\{.*finished_reason="abort"/), 1);
  assert.equal(await value(m, /^denoise_images_generated_total\{/), 2);
  assert.equal(await value(m, /^denoise_pixels_generated_total\{/), 16 * 8 * 2);
  assert.equal(await value(m, /^denoise_step_seconds_count\{/), 2);
  assert.equal(await value(m, /^denoise_stage_seconds_count\{.*stage="encode"/), 1);
  assert.equal(await value(m, /^denoise_non_finite_outputs_total\{.*stage="latents"/), 1);
  assert.equal(await value(m, /^denoise_model_load_seconds\{/), 1.5);
  assert.equal(await value(m, /^vllm:e2e_request_latency_seconds_count\{/), 2);
  assert.equal(await value(m, /^denoise_http_requests_total\{.*status="200"/), 1);
  assert.ok((await value(m, /^process_resident_memory_bytes /)) > 0);
});

Deno.test("metrics: steps count by whether step caching skipped the denoiser", async () => {
  const m = new Metrics("m", () => ({ running: 0, waiting: 0 }));
  assert.equal(await value(m, /^denoise_steps_total\{.*cached="true"/), 0);
  const result = fakeResult({ prompt: "x", width: 16, height: 8 });
  const steps = result.timings.stepMs.length;
  m.observer.requestFinished!("stop", { queue: 0, e2e: 0 }, {
    ...result,
    timings: { ...result.timings, cachedSteps: 1 },
  });
  assert.equal(await value(m, /^denoise_steps_total\{.*cached="true"/), 1);
  assert.equal(await value(m, /^denoise_steps_total\{.*cached="false"/), steps - 1);
});
