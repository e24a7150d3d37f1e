/**
 * The diffusion engine's lifecycle: the server listens at once while the model loads in the
 * background (so 503 is real), then generations run one at a time in arrival order behind a
 * bounded queue (429 when full).
 *
 * @module
 */
import type { GenerateOptions, GenerateResult, Pipeline } from "../compute/mod.ts";
import { ApiError, ENGINE_NOT_READY } from "./errors.ts";

/** Where the engine is in its life. */
export type EngineState =
  | { status: "loading"; stage?: string }
  | { status: "ready"; pipeline: Pipeline }
  | { status: "failed"; reason: string };

/** Owns the pipeline and serialises access to it. */
export class Engine {
  #state: EngineState = { status: "loading" };
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  constructor(readonly maxQueue = 16) {}

  get state(): EngineState {
    return this.#state;
  }

  /**
   * Starts loading in the background; the returned promise settles when loading ends. `load` may
   * report what it is doing (e.g. download progress), which `/health` and 503 answers show.
   */
  start(load: (report: (stage: string) => void) => Promise<Pipeline>): Promise<void> {
    const report = (stage: string) => {
      if (this.#state.status === "loading") this.#state = { status: "loading", stage };
    };
    return load(report).then(
      (pipeline) => {
        this.#state = { status: "ready", pipeline };
      },
      (e) => {
        this.#state = { status: "failed", reason: (e as Error).message };
      },
    );
  }

  /** The ready pipeline, or a 503 explaining why there is none. */
  pipeline(): Pipeline {
    if (this.#state.status === "ready") return this.#state.pipeline;
    const why = this.#state.status === "loading"
      ? `the model is still loading${this.#state.stage ? ` (${this.#state.stage})` : ""}`
      : `loading failed: ${this.#state.reason}`;
    throw new ApiError(503, ENGINE_NOT_READY, {
      type: "service_unavailable",
      code: "engine_not_ready",
      headers: { "retry-after": "5" },
    }).withReason(why);
  }

  /** Runs one generation after those already queued. */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    const pipeline = this.pipeline();
    if (this.#pending > this.maxQueue) {
      throw new ApiError(
        429,
        `Too many requests waiting (queue of ${this.maxQueue}); retry shortly.`,
        {
          type: "rate_limit_error",
          code: "queue_full",
          headers: { "retry-after": "2" },
        },
      );
    }
    this.#pending++;
    const run = this.#tail.then(() => {
      if (options.signal?.aborted) throw new ApiError(499, "Client closed request");
      return pipeline.generate(options);
    });
    this.#tail = run.catch(() => {}).finally(() => this.#pending--);
    return run;
  }

  async release(): Promise<void> {
    if (this.#state.status === "ready") await this.#state.pipeline.release();
  }
}
