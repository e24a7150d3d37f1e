/**
 * Stable Diffusion XL (and SDXL-Turbo, and inpainting folders): the {@linkcode Family}.
 *
 * @module
 */
import type { Family } from "../family.ts";

/** Stable Diffusion XL. */
export const STABLE_DIFFUSION_XL: Family = {
  name: "stable_diffusion_xl",
  pipelineClasses: [
    "StableDiffusionXLPipeline",
    "ORTStableDiffusionXLPipeline",
    "StableDiffusionXLInpaintPipeline",
    "ORTStableDiffusionXLInpaintPipeline",
  ],
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
};
