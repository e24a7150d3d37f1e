/**
 * Messages between the engine (HTTP thread) and its inference worker. Everything here survives
 * structured cloning; pixel buffers are transferred, not copied.
 *
 * @module
 */
import {
  type BackendSettings,
  type DeviceChoice,
  type DeviceName,
  type ExecutionSettings,
  type GenerateOptions,
  type GenerateResult,
  InvalidInputError,
  type LoraLimits,
  NonFiniteOutputError,
  type NonFiniteStage,
  type PipelineDefaults,
  type Preview,
  type StepInfo,
  type VaeDecodeSettings,
} from "../../compute/mod.ts";

/** What the HTTP side knows of the loaded model. */
export interface ModelInfo {
  family: string;
  device: DeviceName;
  defaults: PipelineDefaults;
  sizeMultiple: number;
  /** Input images an edit takes; 0: the model cannot edit (`Pipeline.maxEditImages`). */
  maxEditImages: number;
}

/** A request's options without what cannot cross threads (signal, callbacks). */
export type GenerationRequest = Omit<GenerateOptions, "signal" | "onStep" | "onPreview">;

/** An error as it crosses threads: its class name and message. */
export interface ErrorMessage {
  name: string;
  message: string;
  /** An InvalidInputError's request parameter. */
  param?: string;
  /** A NonFiniteOutputError's stage. */
  stage?: NonFiniteStage;
}

/** Batching settings of the worker. */
export interface BatchSettings {
  /** Most images (rows before CFG doubling) per denoiser call. */
  maxBatchSize: number;
  /** How long an idle engine waits for batch-mates of a first request. */
  batchWaitMs: number;
}

/** How the worker loads the model. */
export interface LoadSettings {
  device: DeviceChoice;
  defaults?: Partial<PipelineDefaults>;
  /** Bounds on request adapters and their cache. */
  lora?: Partial<LoraLimits>;
  /** Threads and graph rewrites of the backend (`--threads`, `--disable-attention-fusion`). */
  backend?: BackendSettings;
  /** How the VAE decodes (`--vae-use-tiling`; slicing is always on). */
  vae?: VaeDecodeSettings;
  /** The denoiser's calls and offloading (`--cfg-mode`, `--cfg-parallel-size`, `--enable-cpu-offload`). */
  execution?: ExecutionSettings;
  /** A published export's variant (`--variant`). */
  variant?: string;
}

/** HTTP thread → worker. */
export type ToWorker =
  | { type: "load"; dir: string; batching: BatchSettings } & LoadSettings
  | {
    type: "generate";
    id: number;
    request: GenerationRequest;
    reportSteps: boolean;
    /** The request's {@linkcode CancelFlag}: shared, not copied. */
    cancel: SharedArrayBuffer;
  }
  /** Removes a request that has not started; one that runs stops through its flag. */
  | { type: "cancel"; id: number }
  | { type: "release" };

/** Worker → HTTP thread. */
export type FromWorker =
  /** The worker's message handler is installed; the engine's first message waits for this. */
  | { type: "listening" }
  | { type: "loaded"; info: ModelInfo }
  | { type: "load-failed"; error: ErrorMessage }
  | { type: "started"; ids: number[]; images: number }
  | { type: "step"; id: number; info: StepInfo }
  | { type: "preview"; id: number; preview: Preview }
  | { type: "done"; id: number; result: GenerateResult }
  | { type: "failed"; id: number; error: ErrorMessage }
  | { type: "released" }
  /** Something the operator should know that fails nothing (e.g. a graph left unfused). */
  | { type: "warning"; message: string }
  /** How the model loaded, worth a line in the log (e.g. a graph opened in shards). */
  | { type: "info"; message: string };

/**
 * A request's cancellation as both threads see it: one 32-bit word in shared memory, set by the
 * HTTP thread and read by the worker at every stage, step and decoder call. A `cancel` message
 * alone arrived late: the worker runs each ONNX Runtime call synchronously, and Deno handed it the
 * message only 0.1–1.1 s after it was posted, 2–29 steps of a 25–50 ms step (docs/reliability.md,
 * "Cancellation and memory"); the shared word is seen at the next check.
 */
export class CancelFlag {
  readonly #word: Int32Array;

  /** A new flag, or the worker's view of one the engine made. */
  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.#word = new Int32Array(buffer);
  }

  /** Sets the flag (HTTP thread). */
  abort(): void {
    Atomics.store(this.#word, 0, 1);
  }

  /** Whether it was set (worker); a `CancelSignal` for the pipeline. */
  get aborted(): boolean {
    return Atomics.load(this.#word, 0) !== 0;
  }
}

/** `error` as a message. */
export function errorMessage(error: unknown): ErrorMessage {
  // Subclasses (LoraError, SafetensorsError) cross as what the HTTP side maps to a 400.
  if (error instanceof InvalidInputError) {
    return { name: "InvalidInputError", message: error.message, param: error.param };
  }
  if (error instanceof NonFiniteOutputError) {
    return { name: error.name, message: error.message, stage: error.stage };
  }
  return error instanceof Error
    ? { name: error.name, message: error.message }
    : { name: "Error", message: String(error) };
}
