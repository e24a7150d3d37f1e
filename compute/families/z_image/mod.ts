/**
 * Z-Image (Turbo): the {@linkcode Family}.
 *
 * @module
 */
import type { Family } from "../family.ts";

/** Z-Image. */
export const Z_IMAGE: Family = {
  name: "z_image",
  pipelineClasses: ["ZImagePipeline"],
  load: async (graphs, defaults, vae) =>
    (await import("./z_image.ts")).ZImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["ZImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
};
