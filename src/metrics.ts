/**
 * Prometheus metrics with prom-client. vLLM's names where they exist (so its dashboards and
 * autoscalers work unchanged: `vllm:num_requests_waiting` is the queue depth to scale on), and
 * `denoise_*` for what is particular to images.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { GenerateResult } from "../compute/mod.ts";
import type { EngineObserver, FinishReason } from "./engine/engine.ts";

const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

const MODEL = ["model_name"];

function counter(registry: Registry, name: string, help: string, labelNames = MODEL): Counter {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function histogram(
  registry: Registry,
  name: string,
  help: string,
  buckets: number[],
  labelNames = MODEL,
): Histogram {
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

function gauge(registry: Registry, name: string, help: string, collect?: () => void): Gauge {
  return new Gauge({ name, help, labelNames: MODEL, registers: [registry], collect });
}

/** The server's metrics; `observer` feeds them from the engine. */
export class Metrics {
  readonly registry = new Registry();
  readonly #labels: { model_name: string };
  readonly #counts: () => { running: number; waiting: number };
  readonly #running = gauge(
    this.registry,
    "vllm:num_requests_running",
    "Requests in the batch now denoising.",
    () => this.#running.set(this.#labels, this.#counts().running),
  );
  readonly #waiting = gauge(
    this.registry,
    "vllm:num_requests_waiting",
    "Requests admitted and waiting to start.",
    () => this.#waiting.set(this.#labels, this.#counts().waiting),
  );
  readonly #e2e = histogram(
    this.registry,
    "vllm:e2e_request_latency_seconds",
    "From admission to the last image, per request.",
    LATENCY_BUCKETS,
  );
  readonly #queue = histogram(
    this.registry,
    "vllm:request_queue_time_seconds",
    "Time a request waited before its batch started.",
    LATENCY_BUCKETS,
  );
  readonly #success = counter(
    this.registry,
    "vllm:request_success_total",
    "Finished requests by reason (stop: done, abort: cancelled, error: failed).",
    [...MODEL, "finished_reason"],
  );
  readonly #images = counter(this.registry, "denoise_images_generated_total", "Images generated.");
  readonly #pixels = counter(
    this.registry,
    "denoise_pixels_generated_total",
    "Pixels generated (width × height × images).",
  );
  readonly #nonFinite = counter(
    this.registry,
    "denoise_non_finite_outputs_total",
    "Requests failed because the model's denoised latents or decoded pixels held NaN or infinity.",
    [...MODEL, "stage"],
  );
  readonly #step = histogram(
    this.registry,
    "denoise_step_seconds",
    "Wall time of one denoising step as each request saw it (its whole batch's call).",
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  readonly #steps = counter(
    this.registry,
    "denoise_steps_total",
    "Denoising steps of finished requests, by whether the denoiser ran (cached: step caching reused its last output).",
    [...MODEL, "cached"],
  );
  readonly #batch = histogram(
    this.registry,
    "denoise_batch_size_images",
    "Images per batch started.",
    [1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
  );
  readonly #stage = histogram(
    this.registry,
    "denoise_stage_seconds",
    "Seconds per request in each stage.",
    LATENCY_BUCKETS,
    [...MODEL, "stage"],
  );
  readonly #load = gauge(
    this.registry,
    "denoise_model_load_seconds",
    "How long the model took to become ready (download included).",
  );
  // The Prometheus convention's name, from Deno (the inference worker shares the process).
  readonly #rss: Gauge = new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory of the server process (all threads).",
    registers: [this.registry],
    collect: () => this.#rss.set(Deno.memoryUsage().rss),
  });
  readonly #http = counter(
    this.registry,
    "denoise_http_requests_total",
    "HTTP requests by method, route and status.",
    ["method", "route", "status"],
  );

  constructor(modelName: string, counts: () => { running: number; waiting: number }) {
    this.#labels = { model_name: modelName };
    this.#counts = counts;
    // Both series exist from the start, so that an alert on their rate sees 0, not nothing.
    for (const stage of ["latents", "pixels"]) this.#nonFinite.inc({ ...this.#labels, stage }, 0);
    for (const cached of ["true", "false"]) this.#steps.inc({ ...this.#labels, cached }, 0);
  }

  /** Engine callbacks that feed the request metrics. */
  readonly observer: EngineObserver = {
    batchStarted: (_requests, images) => this.#batch.observe(this.#labels, images),
    nonFiniteOutput: (stage) => this.#nonFinite.inc({ ...this.#labels, stage }),
    requestFinished: (reason: FinishReason, seconds, result?: GenerateResult) => {
      this.#success.inc({ ...this.#labels, finished_reason: reason });
      this.#queue.observe(this.#labels, seconds.queue);
      this.#e2e.observe(this.#labels, seconds.e2e);
      if (!result) return;
      this.#images.inc(this.#labels, result.images.length);
      this.#pixels.inc(this.#labels, result.width * result.height * result.images.length);
      for (const ms of result.timings.stepMs) this.#step.observe(this.#labels, ms / 1000);
      const cached = result.timings.cachedSteps ?? 0;
      this.#steps.inc({ ...this.#labels, cached: "true" }, cached);
      this.#steps.inc({ ...this.#labels, cached: "false" }, result.timings.stepMs.length - cached);
      const stage = (name: string, ms: number) =>
        this.#stage.observe({ ...this.#labels, stage: name }, ms / 1000);
      stage("text_encode", result.timings.textEncodeMs);
      stage("denoise", result.timings.stepMs.reduce((a, b) => a + b, 0));
      stage("decode", result.timings.decodeMs);
    },
  };

  modelLoaded(seconds: number): void {
    this.#load.set(this.#labels, seconds);
  }

  encoded(ms: number): void {
    this.#stage.observe({ ...this.#labels, stage: "encode" }, ms / 1000);
  }

  httpRequest(method: string, route: string, status: number): void {
    this.#http.inc({ method, route, status: String(status) });
  }
}
