/**
 * Stable Diffusion 1.x/2.x (and Turbo, and inpainting folders): the {@linkcode Family}.
 *
 * @module
 */
import { DEFAULT_MAX_IMAGE_PIXELS } from "../../limits.ts";
import type { LatentRgbFactors } from "../../pipelines/preview.ts";
import type { Family, KnownModel } from "../family.ts";

/** SD 1.x / 2.x / SD-Turbo VAE (scaling factor 0.18215), model-space latents. */
const SD_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [0.3512, 0.2297, 0.3227],
    [0.325, 0.4974, 0.235],
    [-0.2829, 0.1762, 0.2721],
    [-0.212, -0.2616, -0.7177],
  ],
};

/** SD-Turbo's model card: 512², one step, guidance 0. */
const SD_TURBO: Omit<KnownModel, "id"> = {
  defaults: { width: 512, height: 512, steps: 1, guidanceScale: 0 },
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
};

/** SD 1.5's model card: 512², diffusers' 50 steps at guidance 7.5. */
const SD_15: Omit<KnownModel, "id"> = {
  defaults: { width: 512, height: 512, steps: 50, guidanceScale: 7.5 },
  maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
};

/** Stable Diffusion 1.x/2.x. */
export const STABLE_DIFFUSION = {
  name: "stable_diffusion",
  pipelineClasses: [
    "StableDiffusionPipeline",
    "ORTStableDiffusionPipeline",
    "OnnxStableDiffusionPipeline",
    // Inpainting folders (sd-v1-5-inpainting: a 9-channel UNet) run on the same pipeline.
    "StableDiffusionInpaintPipeline",
    "ORTStableDiffusionInpaintPipeline",
    "OnnxStableDiffusionInpaintPipeline",
  ],
  models: [
    {
      // The embedded default (models/shapes-tiny): trained here on flat-coloured shapes at 256².
      id: "denoise/shapes-tiny",
      defaults: { width: 256, height: 256, steps: 20, guidanceScale: 2 },
      maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
    },
    { id: "stabilityai/sd-turbo", ...SD_TURBO },
    { id: "microsoft/sd-turbo-webnn", ...SD_TURBO },
    { id: "schmuell/sd-turbo-ort-web", ...SD_TURBO },
    { id: "onnxruntime/sd-turbo", ...SD_TURBO },
    { id: "stable-diffusion-v1-5/stable-diffusion-v1-5", ...SD_15 },
    { id: "runwayml/stable-diffusion-v1-5", ...SD_15 },
    {
      id: "stabilityai/stable-diffusion-2-1",
      defaults: { width: 768, height: 768, steps: 50, guidanceScale: 7.5 },
      maxImagePixels: DEFAULT_MAX_IMAGE_PIXELS,
    },
  ],
  defaults: { steps: 50, guidanceScale: 7.5 },
  // Distilled one-step models (SD-Turbo) ship Euler with trailing spacing and run without CFG.
  distilledDefaults: { steps: 1, guidanceScale: 0 },
  denoiser: "unet",
  stepCacheSignal: {
    // The first ResNet's `conv1` output plus the time embedding (the `Add` after `conv1`, which
    // `norm2` reads): the first block's timestep-modulated input.
    tea_cache: [{ prefix: "/down_blocks.0/resnets.0/conv1/", take: "consumer", op: "Add" }],
    // The first ResNet's `conv2` output, which the block adds to its input.
    cache_dit: [{ prefix: "/down_blocks.0/resnets.0/conv2/", take: "output" }],
  },
  preview: { factors: SD_LATENT_RGB, vae: { scalingFactor: 0.18215 } },
  load: async (graphs, defaults, vae) =>
    (await import("./stable_diffusion.ts")).StableDiffusionPipeline.load(graphs, defaults, vae),
  convert: {
    // sd-v1-5-inpainting's folder: the same parts, a 9-channel UNet.
    pipelineClasses: ["StableDiffusionPipeline", "StableDiffusionInpaintPipeline"],
    components: ["text_encoder", "unet", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "clip",
  },
} satisfies Family;
