/**
 * Stable Diffusion XL (and SDXL-Turbo, and inpainting folders): the {@linkcode Family}.
 *
 * @module
 */
import { DEFAULT_MAX_IMAGE_PIXELS } from "../../limits.ts";
import type { LatentRgbFactors } from "../../pipelines/preview.ts";
import type { Family, KnownModel } from "../family.ts";
import { STABLE_DIFFUSION } from "../stable_diffusion/mod.ts";

/** SDXL / SDXL-Turbo VAE (scaling factor 0.13025), model-space latents. */
const SDXL_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
  ],
  bias: [0.1084, -0.0175, -0.0011],
};

/** SDXL-Turbo's model card: 512², one step (up to four), guidance 0. */
const SDXL_TURBO: Omit<KnownModel, "id"> = {
  defaults: { width: 512, height: 512, steps: 1, guidanceScale: 0 },
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
};

/** Stable Diffusion XL. */
export const STABLE_DIFFUSION_XL = {
  name: "stable_diffusion_xl",
  pipelineClasses: [
    "StableDiffusionXLPipeline",
    "ORTStableDiffusionXLPipeline",
    "StableDiffusionXLInpaintPipeline",
    "ORTStableDiffusionXLInpaintPipeline",
  ],
  models: [
    { id: "stabilityai/sdxl-turbo", ...SDXL_TURBO },
    // Its ONNX export for the WebNN demo (served as published: compute/model/published_layouts.ts).
    { id: "webnn/sdxl-turbo", ...SDXL_TURBO },
    {
      // diffusers' StableDiffusionXLPipeline defaults: 1024², 50 steps, guidance 5.
      id: "stabilityai/stable-diffusion-xl-base-1.0",
      defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 5 },
      // SDXL's documented aspect buckets reach 1536×640 and 640×1536: 1536 as a square's side.
      maxImagePixels: 1536 * 1536,
    },
  ],
  // diffusers' StableDiffusionXLPipeline: 50 steps at guidance 5.
  defaults: { steps: 50, guidanceScale: 5 },
  distilledDefaults: { steps: 1, guidanceScale: 0 },
  denoiser: "unet",
  // The same UNet modules as SD 1.x/2.x.
  stepCacheSignal: STABLE_DIFFUSION.stepCacheSignal,
  preview: { factors: SDXL_LATENT_RGB, vae: { scalingFactor: 0.13025 } },
  load: async (graphs, defaults, vae) =>
    (await import("./stable_diffusion_xl.ts")).StableDiffusionXLPipeline.load(
      graphs,
      defaults,
      vae,
    ),
  convert: {
    pipelineClasses: ["StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline"],
    components: ["text_encoder", "text_encoder_2", "unet", "vae"],
    copy: ["tokenizer", "tokenizer_2", "scheduler"],
    tokenizer: "clip",
  },
} satisfies Family;
