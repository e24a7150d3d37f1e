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

/** The server's metrics; `observer` feeds them from the engine. */
export class Metrics {
  readonly registry = new Registry();
  readonly #labels: { model_name: string };
  readonly #running: Gauge;
  readonly #waiting: Gauge;
  readonly #e2e: Histogram;
  readonly #queue: Histogram;
  readonly #success: Counter;
  readonly #images: Counter;
  readonly #pixels: Counter;
  readonly #nonFinite: Counter;
  readonly #step: Histogram;
  readonly #batch: Histogram;
  readonly #stage: Histogram;
  readonly #load: Gauge;
  readonly #http: Counter;

  constructor(modelName: string, counts: () => { running: number; waiting: number }) {
    this.#labels = { model_name: modelName };
    const registers = [this.registry];
    const model = ["model_name"];
    this.#running = new Gauge({
      name: "vllm:num_requests_running",
      help: "Requests in the batch now denoising.",
      labelNames: model,
      registers,
      collect: () => this.#running.set(this.#labels, counts().running),
    });
    this.#waiting = new Gauge({
      name: "vllm:num_requests_waiting",
      help: "Requests admitted and waiting to start.",
      labelNames: model,
      registers,
      collect: () => this.#waiting.set(this.#labels, counts().waiting),
    });
    this.#e2e = new Histogram({
      name: "vllm:e2e_request_latency_seconds",
      help: "From admission to the last image, per request.",
      labelNames: model,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#queue = new Histogram({
      name: "vllm:request_queue_time_seconds",
      help: "Time a request waited before its batch started.",
      labelNames: model,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#success = new Counter({
      name: "vllm:request_success_total",
      help: "Finished requests by reason (stop: done, abort: cancelled, error: failed).",
      labelNames: [...model, "finished_reason"],
      registers,
    });
    this.#images = new Counter({
      name: "denoise_images_generated_total",
      help: "Images generated.",
      labelNames: model,
      registers,
    });
    this.#pixels = new Counter({
      name: "denoise_pixels_generated_total",
      help: "Pixels generated (width × height × images).",
      labelNames: model,
      registers,
    });
    this.#nonFinite = new Counter({
      name: "denoise_non_finite_outputs_total",
      help:
        "Requests failed because the model's denoised latents or decoded pixels held NaN or infinity.",
      labelNames: [...model, "stage"],
      registers,
    });
    // Both series exist from the start, so that an alert on their rate sees 0, not nothing.
    for (const stage of ["latents", "pixels"]) this.#nonFinite.inc({ ...this.#labels, stage }, 0);
    this.#step = new Histogram({
      name: "denoise_step_seconds",
      help: "Wall time of one denoising step as each request saw it (its whole batch's call).",
      labelNames: model,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#batch = new Histogram({
      name: "denoise_batch_size_images",
      help: "Images per batch started.",
      labelNames: model,
      buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
      registers,
    });
    this.#stage = new Histogram({
      name: "denoise_stage_seconds",
      help: "Seconds per request in each stage.",
      labelNames: [...model, "stage"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#load = new Gauge({
      name: "denoise_model_load_seconds",
      help: "How long the model took to become ready (download included).",
      labelNames: model,
      registers,
    });
    // The Prometheus convention's name, from Deno (the inference worker shares the process).
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory of the server process (all threads).",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    this.#http = new Counter({
      name: "denoise_http_requests_total",
      help: "HTTP requests by method, route and status.",
      labelNames: ["method", "route", "status"],
      registers,
    });
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
