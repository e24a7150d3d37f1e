/**
 * `compute/`: diffusion pipelines over ONNX Runtime (WebGPU, WASM, native CPU). Knows nothing of
 * HTTP.
 *
 * ```ts
 * import { encodeImage, loadPipeline } from "./mod.ts";
 * const pipeline = await loadPipeline("fixtures/models/sd-turbo-tiny", { device: "auto" });
 * const result = await pipeline.generate({ prompt: "a red cat", seed: 42 });
 * await Deno.writeFile("cat.png", await encodeImage(result.images[0], "png"));
 * ```
 *
 * @module
 */
export { type LoadOptions, loadPipeline, SUPPORTED_PIPELINES } from "./load.ts";
export {
  type BackendSettings,
  DEVICE_CHOICES,
  type DeviceChoice,
  type DeviceName,
} from "./backends/backend.ts";
export {
  encodeImage,
  encodeImages,
  type ImageFormat,
  MAX_SIDE,
  MIME_TYPES,
} from "./image/encode.ts";
export { PngWorkers } from "./image/png_workers.ts";
export {
  BackendUnavailableError,
  CancelledError,
  InterfaceMismatchError,
  InvalidInputError,
  ModelLoadError,
  NonFiniteOutputError,
  type NonFiniteStage,
} from "./errors.ts";
export { torchRandn } from "./random.ts";
export {
  DEFAULT_MAX_IMAGE_PIXELS,
  findModelCard,
  MODEL_REGISTRY,
  type ModelCard,
} from "./registry.ts";
export { type DownloadPlan, type DownloadProgress, HubError } from "./model/hub_download.ts";
export {
  hubCacheDirs,
  ModelNotFoundError,
  type ResolvedModel,
  resolveModel,
} from "./model/resolve.ts";
export { SCHEDULER_NAMES, type SchedulerName } from "./schedulers/mod.ts";
export type {
  BatchOutcome,
  CancelSignal,
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
export {
  DEFAULT_LORA_LIMITS,
  type LoraLimits,
  LoraPipeline,
  MAX_LORA_SCALE,
} from "./lora/lora_pipeline.ts";
export { type AdapterFiles, adapterFiles } from "./lora/files.ts";
export { LoraError } from "./lora/adapter.ts";
export type { VaeDecodeSettings } from "./pipelines/vae_decode.ts";
