/**
 * What every diffusion pipeline takes and returns, independent of model family and backend.
 *
 * @module
 */
import type { DeviceName } from "../backends/backend.ts";
import type { SchedulerName } from "../schedulers/mod.ts";
import type { CacheConfig } from "./step_cache.ts";

/** Progress of one denoising step, reported through `onStep`. */
export interface StepInfo {
  /** 0-based step index. */
  step: number;
  total: number;
  /** The model timestep of this step. */
  timestep: number;
  /** Wall time of this step in milliseconds. */
  ms: number;
  /** The denoiser did not run: the step reused its last output (step caching). */
  cached: boolean;
}

/**
 * How a generation learns that it is cancelled: an `AbortSignal`, or anything else whose `aborted`
 * turns true (the server's engine worker reads a flag that the HTTP thread sets in shared memory,
 * which needs no message to arrive).
 */
export interface CancelSignal {
  readonly aborted: boolean;
}

/** Inputs of one generation call. Absent values take the pipeline's defaults. */
export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  /** Denoising steps (diffusers `num_inference_steps`). */
  steps?: number;
  /** Classifier-free guidance scale; guidance runs when it is > 1. */
  guidanceScale?: number;
  /** Qwen-Image style true CFG scale (ignored by families without it). */
  trueCfgScale?: number;
  /**
   * Z-Image: guidance is dropped on steps whose normalised time `1 − σ` exceeds this (diffusers
   * `cfg_truncation`, default 1: never). Ignored by other families.
   */
  cfgTruncation?: number;
  /**
   * Z-Image: when > 0, each guided prediction is clipped to `‖pos‖ · cfgNormalization` (diffusers
   * `cfg_normalization`, default 0: off; its `True` is 1). Ignored by other families.
   */
  cfgNormalization?: number;
  /** torch-compatible seed; a random 32-bit one is drawn when absent. */
  seed?: number | bigint;
  /** Images per call (batched through the networks). */
  n?: number;
  /** Swap the model's scheduler for another with the same noise schedule. */
  scheduler?: SchedulerName;
  /**
   * Read before each request's text encoding, each denoising step and each decoder call (an image
   * with slicing, a tile with tiling): once it is aborted, the request fails with `CancelledError`
   * there, and its batch-mates go on.
   */
  signal?: CancelSignal;
  onStep?: (info: StepInfo) => void;
  /**
   * Previews wanted (0–3): the predicted clean image x̂₀ at steps spread evenly over the run,
   * reported through `onPreview`. Fewer arrive when there are too few steps (never on the last).
   */
  previews?: number;
  onPreview?: (preview: Preview) => void;
  /**
   * LoRA adapters merged into the graphs for this call, each with its own scale. Adapters are
   * applied together (their sum) and in no particular order; a scale of 0 leaves one out.
   */
  lora?: readonly LoraSpec[];
  /**
   * Start from this image instead of pure noise (image-to-image; inpainting with a mask). Only
   * pipelines whose {@linkcode Pipeline.maxEditImages} is ≥ 1 accept it.
   */
  edit?: EditInput;
  /**
   * Step caching for this call (`--cache-backend`/`--cache-config`, or the request's override);
   * absent: every step runs the denoiser. A batch runs with its first request's settings (the
   * server's engine batches only requests with equal ones).
   */
  cache?: CacheConfig;
}

/** What a request edits: image-to-image, or inpainting when a mask is given. */
export interface EditInput {
  /** The image to start from, already at the output's width × height. */
  image: RgbImage;
  /**
   * Where to repaint: one byte per pixel of `image`, rows top to bottom; ≥ 128 repaints and < 128
   * keeps (diffusers binarises its mask at 0.5 the same way; OpenAI's transparent mask pixels
   * arrive here as 255). Absent: the whole image is repainted (image-to-image).
   */
  mask?: Uint8Array;
  /**
   * Share of the schedule run from the noised image, in (0, 1] (diffusers' `strength`): 1 starts
   * from pure noise, small values keep more of the image.
   */
  strength: number;
}

/** One adapter of a request: its files, a stable identity for caching, and its scale. */
export interface LoraSpec {
  /** Identifies the adapter's content for caching (vLLM-Omni's `int_id`). */
  id: string;
  /** What the request called it, for logs. */
  name?: string;
  /**
   * Real paths of its files (a `.safetensors` file, plus `adapter_config.json` for PEFT), and
   * what messages call it (no path of the server).
   */
  files: { weights: string; config?: string; label: string };
  scale: number;
}

/** A preview of every image of a request at one step, from its x̂₀ estimate. */
export interface Preview {
  /** 0-based preview number (OpenAI's `partial_image_index`). */
  index: number;
  /** The step it was taken after. */
  step: number;
  /**
   * One image per requested image. It may be smaller than the output (a latent-space
   * approximation at 1/8 size); the caller scales it.
   */
  images: RgbImage[];
}

/** A member of a batch either finishes or fails on its own; the others go on. */
export type BatchOutcome =
  | { ok: true; result: GenerateResult }
  | { ok: false; error: Error };

/** An 8-bit RGB image, rows top to bottom, pixels interleaved `RGBRGB…`. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Wall times of each stage in milliseconds. */
export interface StageTimings {
  tokenizeMs: number;
  textEncodeMs: number;
  stepMs: number[];
  decodeMs: number;
  /** Steps that reused the denoiser's last output (step caching). */
  cachedSteps?: number;
  /** Merging this call's LoRA adapters into the graphs; 0 when they were cached or absent. */
  loraMs?: number;
  /** Set by {@linkcode encodeImages} once the images are encoded. */
  encodeMs?: number;
  totalMs: number;
}

/** The images and how they were made. */
export interface GenerateResult {
  images: RgbImage[];
  seed: bigint;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  scheduler: string;
  timings: StageTimings;
}

/** Values used when a request leaves a parameter out. */
export interface PipelineDefaults {
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  /** Families with true CFG (Qwen-Image) only. */
  trueCfgScale?: number;
}

/** A loaded pipeline: sessions are created once and serve many calls. */
export interface Pipeline {
  /** diffusers pipeline class, e.g. `StableDiffusionPipeline`. */
  readonly family: string;
  readonly device: DeviceName;
  readonly defaults: PipelineDefaults;
  /** Width and height must be multiples of this. */
  readonly sizeMultiple: number;
  /**
   * How many input images an edit takes: 1 when the model folder has a VAE encoder, 0 when it
   * cannot edit (requests with {@linkcode GenerateOptions.edit} are refused).
   */
  readonly maxEditImages: number;
  /** Runs one request; throws what the request failed with. */
  generate(options: GenerateOptions): Promise<GenerateResult>;
  /**
   * Requests with equal keys can share every denoiser call: same size, steps, scheduler and
   * guidance mode (and whatever else changes the graph's input shapes). Throws `RangeError` for
   * options no run could accept.
   */
  batchKey(options: GenerateOptions): string;
  /**
   * Runs requests of one {@linkcode batchKey} together. Each keeps its own seed, generator and
   * cancel signal, and gets the same bytes it would get alone.
   */
  generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]>;
  release(): Promise<void>;
}
