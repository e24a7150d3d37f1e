/**
 * The diffusion engine as the HTTP thread sees it. The model loads and runs in a worker
 * (`worker.ts`), so the event loop stays free for health checks, streaming and disconnects while
 * images are made. The engine admits requests into a bounded queue ({@linkcode QueueFull} beyond
 * it), forwards cancellation, and reports what happens to an {@linkcode EngineObserver}
 * (metrics). It speaks in its own errors (`errors.ts`), never in HTTP statuses.
 *
 * @module
 */
import {
  CancelledError,
  type GenerateOptions,
  type GenerateResult,
  InvalidInputError,
  NonFiniteOutputError,
  type NonFiniteStage,
} from "../../compute/mod.ts";
import { EngineNotReady, ModelLoadFailed, QueueFull } from "./errors.ts";
import {
  type BatchSettings,
  CancelFlag,
  type ErrorMessage,
  type FromWorker,
  type GenerationRequest,
  type LoadSettings,
  type ModelInfo,
  type ToWorker,
} from "./protocol.ts";

/** Where the engine is in its life. */
export type EngineState =
  | { status: "loading"; stage?: string }
  | { status: "ready"; model: ModelInfo }
  | { status: "failed"; reason: string };

/** Engine settings (the server's flags). */
export interface EngineConfig extends BatchSettings {
  /** Most requests waiting to start; more are refused with {@linkcode QueueFull}. */
  maxQueue: number;
}

/** How a request ended, for metrics (vLLM's `finished_reason` plus ours). */
export type FinishReason = "stop" | "abort" | "error";

/** Callbacks for metrics; every one is optional. */
export interface EngineObserver {
  batchStarted?(requests: number, images: number): void;
  /** The worker reports something the operator should know that fails nothing. */
  warning?(message: string): void;
  /** The worker reports how the model loaded (e.g. a graph opened in shards). */
  info?(message: string): void;
  /** A request failed because the model's latents or pixels held a NaN or an infinity. */
  nonFiniteOutput?(stage: NonFiniteStage): void;
  requestFinished?(
    reason: FinishReason,
    seconds: { queue: number; e2e: number },
    result?: GenerateResult,
  ): void;
}

/** One generation as the engine takes it: its options, cancelled through an `AbortSignal`. */
export type EngineRequest = Omit<GenerateOptions, "signal"> & { signal?: AbortSignal };

interface Pending {
  options: Pick<EngineRequest, "onStep" | "onPreview">;
  /** Set when the request is cancelled; the worker reads it. */
  flag: CancelFlag;
  resolve(result: GenerateResult): void;
  reject(error: Error): void;
  submitted: number;
  started?: number;
  cleanup(): void;
}

/** Rebuilds an error that crossed from the worker, keeping the classes callers map by. */
function revive({ name, message, param, stage }: ErrorMessage): Error {
  if (name === "CancelledError") return new CancelledError(message);
  if (name === "InvalidInputError") return Object.assign(new InvalidInputError(message), { param });
  if (name === "NonFiniteOutputError") return new NonFiniteOutputError(stage ?? "pixels");
  const error = new Error(message);
  error.name = name;
  return error;
}

/** Owns the inference worker and the requests in flight. */
export class Engine {
  #state: EngineState = { status: "loading" };
  #worker?: Worker;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #idle?: { promise: Promise<void>; resolve(): void };
  #released?: () => void;
  /** Settles once the worker has its load message, or has stopped. */
  #loadSent?: Promise<void>;
  #workerStopped = false;

  constructor(readonly config: EngineConfig, readonly observer: EngineObserver = {}) {}

  get state(): EngineState {
    return this.#state;
  }

  /** Requests admitted and not yet started. */
  get waiting(): number {
    let n = 0;
    for (const p of this.#pending.values()) if (p.started === undefined) n++;
    return n;
  }

  /** Requests in a running batch. */
  get running(): number {
    return this.#pending.size - this.waiting;
  }

  /**
   * Loads the model in the background: `prepare` (e.g. a download, on this thread: it is I/O)
   * yields the model folder, then the worker loads it. The promise settles when loading ends.
   */
  async start(
    prepare: (report: (stage: string) => void) => Promise<string>,
    load: LoadSettings,
  ): Promise<void> {
    const report = (stage: string) => {
      if (this.#state.status === "loading") this.#state = { status: "loading", stage };
    };
    try {
      const dir = await prepare(report);
      report("loading the ONNX graphs");
      const model = await this.#load(dir, load);
      this.#state = { status: "ready", model };
    } catch (e) {
      this.#state = { status: "failed", reason: (e as Error).message };
    }
  }

  #load(dir: string, load: LoadSettings): Promise<ModelInfo> {
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    this.#worker = worker;
    const loadSent = Promise.withResolvers<void>();
    this.#loadSent = loadSent.promise;
    return new Promise((resolve, reject) => {
      const message: ToWorker = {
        type: "load",
        dir,
        device: load.device,
        defaults: load.defaults,
        lora: load.lora,
        vae: load.vae,
        execution: load.execution,
        variant: load.variant,
        backend: load.backend,
        batching: { maxBatchSize: this.config.maxBatchSize, batchWaitMs: this.config.batchWaitMs },
      };
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        const m = event.data;
        if (m.type === "listening") {
          worker.postMessage(message);
          loadSent.resolve();
        } else if (m.type === "loaded") resolve(m.info);
        else if (m.type === "load-failed") reject(revive(m.error));
        else this.#onMessage(m);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        this.#workerStopped = true;
        loadSent.resolve();
        this.#released?.();
        const reason = `the inference worker stopped: ${event.message}`;
        reject(new Error(reason));
        this.#state = { status: "failed", reason };
        for (const [id, p] of this.#pending) this.#settle(id, p, new Error(reason));
      };
    });
  }

  /**
   * The loaded model, or why there is none: {@linkcode EngineNotReady} while it loads (retrying
   * later helps), {@linkcode ModelLoadFailed} after a failed load (permanent until restarted).
   */
  model(): ModelInfo {
    if (this.#state.status === "ready") return this.#state.model;
    if (this.#state.status === "loading") throw new EngineNotReady(this.#state.stage);
    throw new ModelLoadFailed(this.#state.reason);
  }

  /**
   * Queues one generation. It runs with the next compatible batch; `signal` cancels it (queued:
   * removed; running: stopped before its next stage, step or decoder call); `onStep`/`onPreview`
   * report its progress.
   */
  generate(options: EngineRequest): Promise<GenerateResult> {
    this.model();
    if (this.waiting >= this.config.maxQueue) {
      throw new QueueFull(this.config.maxQueue);
    }
    const { signal, onStep, onPreview, ...request } = options;
    if (signal?.aborted) return Promise.reject(new CancelledError("Generation cancelled"));
    const id = this.#nextId++;
    const flag = new CancelFlag();
    return new Promise((resolve, reject) => {
      const cancel = () => this.#cancel(id, flag);
      signal?.addEventListener("abort", cancel, { once: true });
      this.#pending.set(id, {
        options: { onStep, onPreview },
        flag,
        resolve,
        reject,
        submitted: performance.now(),
        cleanup: () => signal?.removeEventListener("abort", cancel),
      });
      this.#post({
        type: "generate",
        id,
        request: request satisfies GenerationRequest,
        reportSteps: onStep !== undefined,
        cancel: flag.buffer,
      });
    });
  }

  /** Stops a request: the worker sees the flag at its next check, or drops it from its queue. */
  #cancel(id: number, flag: CancelFlag): void {
    flag.abort();
    this.#post({ type: "cancel", id });
  }

  #post(message: ToWorker): void {
    this.#worker?.postMessage(message);
  }

  #onMessage(m: FromWorker): void {
    switch (m.type) {
      case "warning":
        this.observer.warning?.(m.message);
        return;
      case "info":
        this.observer.info?.(m.message);
        return;
      case "started": {
        const now = performance.now();
        for (const id of m.ids) {
          const p = this.#pending.get(id);
          if (p) p.started = now;
        }
        this.observer.batchStarted?.(m.ids.length, m.images);
        return;
      }
      case "step":
        this.#pending.get(m.id)?.options.onStep?.(m.info);
        return;
      case "preview":
        this.#pending.get(m.id)?.options.onPreview?.(m.preview);
        return;
      case "done":
      case "failed": {
        const p = this.#pending.get(m.id);
        if (p) this.#settle(m.id, p, m.type === "done" ? m.result : revive(m.error));
        return;
      }
      case "released":
        this.#released?.();
        return;
    }
  }

  #settle(id: number, p: Pending, outcome: GenerateResult | Error): void {
    this.#pending.delete(id);
    p.cleanup();
    const now = performance.now();
    const seconds = {
      queue: ((p.started ?? now) - p.submitted) / 1000,
      e2e: (now - p.submitted) / 1000,
    };
    if (outcome instanceof Error) {
      const reason = outcome instanceof CancelledError ? "abort" : "error";
      this.observer.requestFinished?.(reason, seconds);
      if (outcome instanceof NonFiniteOutputError) this.observer.nonFiniteOutput?.(outcome.stage);
      p.reject(outcome);
    } else {
      this.observer.requestFinished?.("stop", seconds, outcome);
      p.resolve(outcome);
    }
    if (this.#pending.size === 0) this.#idle?.resolve();
  }

  /** Resolves once no request is queued or running. */
  idle(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r)).finally(() => {
        this.#idle = undefined;
      });
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  /** Fails every request in flight with `error` and cancels their work. */
  abortAll(error: Error): void {
    for (const [id, p] of this.#pending) {
      this.#cancel(id, p.flag);
      this.#settle(id, p, error);
    }
  }

  /**
   * Readies the process to exit: resolves once the worker has finished the native call it is in
   * (a load, or the current step of a batch: call {@linkcode abortAll} first not to wait for
   * whole requests), released the model's sessions, and gone idle for good.
   *
   * The worker is left idle rather than terminated, and there is no timeout: exiting runs ONNX
   * Runtime's global destructors, and a thread still inside its native code then crashes the
   * process (exit 139, SIGSEGV, or 134, glibc aborting on a corrupted heap: 5 of 30 drains when
   * SIGTERM came while the model loaded). `terminate()` cannot stop native code, and terminating
   * an idle worker tears its N-API state down on its own thread while exit runs on this one.
   */
  async close(): Promise<void> {
    if (!this.#worker) return;
    await this.#loadSent;
    if (this.#workerStopped) return;
    const released = new Promise<void>((resolve) => (this.#released = resolve));
    this.#post({ type: "release" });
    await released;
  }
}
