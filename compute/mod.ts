/**
 * `compute/`: diffusion pipelines over ONNX Runtime (WebGPU, WASM, native CPU). Knows nothing of
 * HTTP.
 *
 * ```ts
 * import { loadPipeline } from "./mod.ts";
 * import { encodeImage } from "./image/mod.ts";
 * const pipeline = await loadPipeline("fixtures/models/sd-turbo-tiny", { device: "auto" });
 * const result = await pipeline.generate({ prompt: "a red cat", seed: 42 });
 * await Deno.writeFile("cat.png", await encodeImage(result.images[0], "png"));
 * ```
 *
 * Three public entry points; code outside `compute/` imports nothing else (`entry_points_test.ts`
 * checks `src/`, `web/`, `conformance/`, `deploy/` and `examples/`):
 * - `compute/mod.ts` (this module): loading, generation, limits, errors, the model registry. It is
 *   light: importing it loads no npm package, so the server's HTTP thread and the inference worker
 *   may import it first thing (the worker installs shims before ONNX Runtime loads). What is heavy
 *   (ONNX Runtime, tokenizers, onnx-proto, the Hugging Face hub client) is imported on the first
 *   call of {@linkcode loadPipeline} or {@linkcode resolveModel}.
 * - `compute/image/mod.ts`: image encoding (PNG, JPEG, WebP with sharp), for whoever writes files
 *   or responses; the inference worker never loads it.
 * - `compute/convert/mod.ts`: checkpoint conversion (safetensors to ONNX model folders) and
 *   safetensors reading.
 *
 * @module
 */
import type { LoadOptions } from "./load.ts";
import type { LoraPipeline } from "./lora/lora_pipeline.ts";
import type { Conversion, ConversionSource } from "./model/converted.ts";
import type { ModelFormat, ResolvedModel } from "./model/resolve.ts";
import type { PipelineDefaults } from "./pipelines/pipeline.ts";

export type { Conversion, ConversionSource, LoadOptions, LoraPipeline, ModelFormat, ResolvedModel };
export {
  DEFAULT_LORA_LIMITS,
  DEFAULT_MAX_IMAGE_PIXELS,
  type ImageFormat,
  type LoraLimits,
  MAX_EDIT_BODY_BYTES,
  MAX_EDIT_INPUT_PIXELS,
  MAX_LORA_SCALE,
  MAX_LORAS_PER_REQUEST,
  MAX_PROMPT_CHARS,
  MAX_SIDE,
} from "./limits.ts";
export {
  type BackendSettings,
  DEVICE_CHOICES,
  type DeviceChoice,
  type DeviceName,
  formatBytes,
  parseShardSize,
} from "./backends/backend.ts";
export { idleCleanup } from "./backends/heap.ts";
export { PngWorkers } from "./image/png_workers.ts";
export {
  BackendUnavailableError,
  CancelledError,
  HubError,
  InterfaceMismatchError,
  InvalidInputError,
  ModelLoadError,
  ModelNotFoundError,
  NonFiniteOutputError,
  type NonFiniteStage,
} from "./errors.ts";
export { torchRandn } from "./random.ts";
export { findModelCard, MODEL_REGISTRY, type ModelCard } from "./registry.ts";
export type { DownloadPlan, DownloadProgress } from "./model/hub_download.ts";
export { SCHEDULER_NAMES, type SchedulerName } from "./schedulers/mod.ts";
export type {
  BatchOutcome,
  CancelSignal,
  EditInput,
  GenerateOptions,
  GenerateResult,
  LoraSpec,
  Pipeline,
  PipelineDefaults,
  Preview,
  RgbImage,
  StageTimings,
  StepInfo,
} from "./pipelines/pipeline.ts";
export { type AdapterFiles, adapterFiles } from "./lora/files.ts";
export { LoraError } from "./lora/adapter.ts";
export { serializeSafetensors } from "./lora/safetensors.ts";
export type { VaeDecodeSettings } from "./pipelines/vae_decode.ts";
export type { ExecutionSettings } from "./model/execution.ts";
export { CFG_MODES, type CfgMode } from "./pipelines/row_calls.ts";
export {
  CACHE_BACKENDS,
  type CacheBackend,
  type CacheConfig,
  parseCacheConfig,
  StepCachePolicy,
} from "./pipelines/step_cache.ts";

/**
 * What each step cache's signal costs on the SD-family model in `dir`: its sub-graph's share of
 * one UNet call's multiply-adds (`compute/bench/denoiser_flops.ts`, imported on the first call).
 */
export async function signalFlopShare(
  dir: string,
  defaults: PipelineDefaults,
): Promise<{ tea_cache: number; cache_dit: number }> {
  const flops = await import("./bench/denoiser_flops.ts");
  return flops.cacheFlops(dir, defaults);
}

/**
 * Loads the model folder `dir` on the chosen device, ready to apply each request's LoRA adapters
 * (`compute/load.ts`, imported here on the first call: see the module doc).
 */
export async function loadPipeline(dir: string, options?: LoadOptions): Promise<LoraPipeline> {
  const load = await import("./load.ts");
  return load.loadPipeline(dir, options);
}

/**
 * Resolves `--model`: a local folder, else a Hugging Face id in the hub cache, else a planned
 * download (`compute/model/resolve.ts`, imported here on the first call: see the module doc).
 */
export async function resolveModel(
  spec: string,
  env?: (name: string) => string | undefined,
  variant?: string,
): Promise<ResolvedModel> {
  const resolve = await import("./model/resolve.ts");
  return resolve.resolveModel(spec, env, variant);
}

/**
 * Plans converting a `--model` of PyTorch weights into the converted-model cache: finds it there
 * or says what running it reads (`compute/model/converted.ts`, imported here on the first call;
 * the conversion itself runs in a worker that loads the converter).
 */
export async function planConversion(
  source: ConversionSource,
  cacheRoot?: string,
): Promise<Conversion> {
  const converted = await import("./model/converted.ts");
  return converted.planConversion(source, cacheRoot);
}
