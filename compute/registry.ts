/**
 * Known model ids → family, per-model defaults (filling absent request parameters), the size
 * multiple and the pixel limit. Unknown folders are recognised from `model_index.json`
 * `_class_name`.
 *
 * @module
 */
import { DEFAULT_MAX_IMAGE_PIXELS } from "./limits.ts";
import type { PipelineDefaults } from "./pipelines/pipeline.ts";

/** What the server knows about a model id. */
export interface ModelCard {
  id: string;
  /** diffusers pipeline class. */
  family: string;
  defaults: PipelineDefaults;
  /** Width and height must be multiples of this. */
  sizeMultiple: number;
  /**
   * Largest width × height served by default (the server's `--max-image-pixels` overrides it):
   * the model's largest documented resolution, rounded up to a square.
   */
  maxImagePixels: number;
  /** Most steps a request runs (a distilled model's); the server lowers larger asks to it. */
  maxSteps?: number;
  /**
   * A guidance-distilled model runs at this guidance scale whatever a request asks (the server
   * warns when a request asks another).
   */
  fixedGuidance?: number;
}

/**
 * Z-Image-Turbo as vLLM-Omni's profile of it says: at most 16 steps, guidance forced to 0
 * (guidance-distilled); the server lowers larger step counts and replaces other guidance, with a
 * warning. Its "9 steps" ran 8 transformer forwards on the schedule of its diffusers (σ ending at
 * 0); diffusers' schedule here (σ from 1 to 1/N) runs one forward per step, so 8 is the same work.
 */
const Z_IMAGE_TURBO: Omit<ModelCard, "id"> = {
  family: "ZImagePipeline",
  defaults: { width: 1024, height: 1024, steps: 8, guidanceScale: 0 },
  sizeMultiple: 16,
  maxImagePixels: 2048 * 2048,
  maxSteps: 16,
  fixedGuidance: 0,
};

/** SDXL-Turbo's model card: 512², one step (up to four), guidance 0. */
const SDXL_TURBO: Omit<ModelCard, "id"> = {
  family: "StableDiffusionXLPipeline",
  defaults: { width: 512, height: 512, steps: 1, guidanceScale: 0 },
  sizeMultiple: 8,
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
};

/** SD-Turbo's model card: 512², one step, guidance 0. */
const SD_TURBO: Omit<ModelCard, "id"> = {
  family: "StableDiffusionPipeline",
  defaults: { width: 512, height: 512, steps: 1, guidanceScale: 0 },
  sizeMultiple: 8,
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
};

/** Models whose recommended settings are known (vLLM-Omni docs, model cards). */
export const MODEL_REGISTRY: readonly ModelCard[] = [
  {
    // The embedded default (models/shapes-tiny): trained here on flat-coloured shapes at 256².
    id: "denoise/shapes-tiny",
    family: "StableDiffusionPipeline",
    defaults: { width: 256, height: 256, steps: 20, guidanceScale: 2 },
    sizeMultiple: 8,
    maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
  },
  {
    id: "Qwen/Qwen-Image",
    family: "QwenImagePipeline",
    defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 1, trueCfgScale: 4 },
    sizeMultiple: 16,
    // vLLM-Omni's Qwen-Image tests use 1664×928; its demo offers sides up to 2048.
    maxImagePixels: 2048 * 2048,
  },
  { id: "Tongyi-MAI/Z-Image-Turbo", ...Z_IMAGE_TURBO },
  // Its ONNX export for the WebNN demo (served as published: compute/model/published_layouts.ts).
  { id: "webnn/Z-Image-Turbo", ...Z_IMAGE_TURBO },
  { id: "stabilityai/sdxl-turbo", ...SDXL_TURBO },
  { id: "webnn/sdxl-turbo", ...SDXL_TURBO },
  {
    // diffusers' StableDiffusionXLPipeline defaults: 1024², 50 steps, guidance 5.
    id: "stabilityai/stable-diffusion-xl-base-1.0",
    family: "StableDiffusionXLPipeline",
    defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 5 },
    sizeMultiple: 8,
    // SDXL's documented aspect buckets reach 1536×640 and 640×1536: 1536 as a square's side.
    maxImagePixels: 1536 * 1536,
  },
  { id: "stabilityai/sd-turbo", ...SD_TURBO },
  { id: "microsoft/sd-turbo-webnn", ...SD_TURBO },
  { id: "schmuell/sd-turbo-ort-web", ...SD_TURBO },
  { id: "onnxruntime/sd-turbo", ...SD_TURBO },
  {
    id: "stable-diffusion-v1-5/stable-diffusion-v1-5",
    family: "StableDiffusionPipeline",
    defaults: { width: 512, height: 512, steps: 50, guidanceScale: 7.5 },
    sizeMultiple: 8,
    maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
  },
  {
    id: "runwayml/stable-diffusion-v1-5",
    family: "StableDiffusionPipeline",
    defaults: { width: 512, height: 512, steps: 50, guidanceScale: 7.5 },
    sizeMultiple: 8,
    maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
  },
  {
    id: "stabilityai/stable-diffusion-2-1",
    family: "StableDiffusionPipeline",
    defaults: { width: 768, height: 768, steps: 50, guidanceScale: 7.5 },
    sizeMultiple: 8,
    maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
  },
];

/** The card of a known id (case-insensitive), if any. */
export function findModelCard(id: string): ModelCard | undefined {
  const lower = id.toLowerCase();
  return MODEL_REGISTRY.find((card) => card.id.toLowerCase() === lower);
}
