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
  models: [{
    id: "Qwen/Qwen-Image",
    defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 1, trueCfgScale: 4 },
    // vLLM-Omni's Qwen-Image tests use 1664×928; its demo offers sides up to 2048.
    maxImagePixels: 2048 * 2048,
  }],
  load: async (graphs, defaults, vae) =>
    (await import("./qwen_image.ts")).QwenImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["QwenImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
};
