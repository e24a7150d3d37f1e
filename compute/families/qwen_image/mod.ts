/**
 * Qwen-Image: the {@linkcode Family}.
 *
 * @module
 */
import type { Family } from "../family.ts";

/** Qwen-Image. */
export const QWEN_IMAGE: Family = {
  name: "qwen_image",
  pipelineClasses: ["QwenImagePipeline"],
  load: async (graphs, defaults, vae) =>
    (await import("./qwen_image.ts")).QwenImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["QwenImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
};
