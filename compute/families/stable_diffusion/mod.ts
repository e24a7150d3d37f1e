/**
 * Stable Diffusion 1.x/2.x (and Turbo, and inpainting folders): the {@linkcode Family}.
 *
 * @module
 */
import type { Family } from "../family.ts";

/** Stable Diffusion 1.x/2.x. */
export const STABLE_DIFFUSION: Family = {
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
  load: async (graphs, defaults, vae) =>
    (await import("./stable_diffusion.ts")).StableDiffusionPipeline.load(graphs, defaults, vae),
  convert: {
    // sd-v1-5-inpainting's folder: the same parts, a 9-channel UNet.
    pipelineClasses: ["StableDiffusionPipeline", "StableDiffusionInpaintPipeline"],
    components: ["text_encoder", "unet", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "clip",
  },
};
