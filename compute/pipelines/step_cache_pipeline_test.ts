import assert from "node:assert/strict";
import { findModelCard } from "../registry.ts";
import { loadPipeline } from "../load.ts";
import type { GenerateOptions, GenerateResult } from "./pipeline.ts";
import type { CacheConfig } from "./step_cache.ts";

const SHAPES = new URL("../../models/shapes-tiny", import.meta.url).pathname;
const FOREIGN = new URL("../../fixtures/models/sd15-tiny", import.meta.url).pathname;
const PROMPT: GenerateOptions = { prompt: "a large red circle on a blue background", seed: 7 };

/** Mean |Δ| of two results' first images, in 8-bit levels. */
function meanAbsDiff(a: GenerateResult, b: GenerateResult): number {
  const [x, y] = [a.images[0].data, b.images[0].data];
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.abs(x[i] - y[i]);
  return sum / x.length;
}

Deno.test("step cache on the embedded model: off is today's bytes, on skips denoiser calls and stays close", async () => {
  const p = await loadPipeline(SHAPES, {
    device: "cpu",
    defaults: findModelCard("denoise/shapes-tiny")!.defaults,
  });
  try {
    const plain = await p.generate(PROMPT);
    const none = await p.generate({ ...PROMPT, cache: { ...cfg("tea_cache"), backend: "none" } });
    assert.deepEqual(none.images[0].data, plain.images[0].data);
    // The signal runs but never says "cache": the denoiser's bytes are untouched by it.
    const never = await p.generate({ ...PROMPT, cache: { ...cfg("tea_cache"), threshold: 1e-9 } });
    assert.equal(never.timings.cachedSteps, 0);
    assert.deepEqual(never.images[0].data, plain.images[0].data);
    for (const backend of ["tea_cache", "cache_dit"] as const) {
      const steps: { step: number; cached: boolean }[] = [];
      const cached = await p.generate({
        ...PROMPT,
        cache: cfg(backend),
        onStep: ({ step, cached }) => steps.push({ step, cached }),
      });
      const skipped = steps.filter((s) => s.cached).map((s) => s.step);
      assert.equal(cached.timings.cachedSteps, skipped.length);
      assert.ok(skipped.length >= 6, `${backend}: only ${skipped.length} of 20 steps cached`);
      assert.ok(skipped.every((s) => s >= 2 && s < 19), `${backend}: cached ${skipped}`);
      const diff = meanAbsDiff(cached, plain);
      assert.ok(diff > 0 && diff < 6, `${backend}: mean |Δ| ${diff.toFixed(2)} of 255`);
      // TaylorSeer: its cached steps hand the scheduler something else than the reused output.
      const seer = await p.generate({ ...PROMPT, cache: { ...cfg(backend), taylorseer: 1 } });
      assert.ok((seer.timings.cachedSteps ?? 0) > 0);
      const seerDiff = meanAbsDiff(seer, plain);
      assert.ok(meanAbsDiff(seer, cached) > 0, `${backend}: TaylorSeer changed nothing`);
      assert.ok(seerDiff < 6, `${backend}, TaylorSeer: mean |Δ| ${seerDiff.toFixed(2)} of 255`);
    }
  } finally {
    await p.release();
  }
});

Deno.test("step cache on a graph without the signal's nodes: told once, every step in full", async () => {
  const p = await loadPipeline(FOREIGN, { device: "cpu" });
  const told: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => told.push(message);
  try {
    const options = { ...PROMPT, steps: 4, guidanceScale: 1 };
    const plain = await p.generate(options);
    for (let k = 0; k < 2; k++) {
      const r = await p.generate({ ...options, cache: cfg("cache_dit", 0) });
      assert.equal(r.timings.cachedSteps, 0);
      assert.deepEqual(r.images[0].data, plain.images[0].data);
    }
    assert.equal(told.length, 1);
    assert.match(told[0], /step cache cache_dit: .*unet\/model\.onnx has none of the nodes/);
  } finally {
    console.warn = warn;
    await p.release();
  }
});

function cfg(backend: CacheConfig["backend"], warmup = 2): CacheConfig {
  return { backend, threshold: 0.3, warmup, maxCached: 2 };
}
