/**
 * Z-Image (Turbo): the {@linkcode Family}.
 *
 * @module
 */
import type { Family, KnownModel } from "../family.ts";

/**
 * Z-Image-Turbo as vLLM-Omni's profile of it says: at most 16 steps, guidance forced to 0
 * (guidance-distilled); the server lowers larger step counts and replaces other guidance, with a
 * warning. Its "9 steps" ran 8 transformer forwards on the schedule of its diffusers (σ ending at
 * 0); diffusers' schedule here (σ from 1 to 1/N) runs one forward per step, so 8 is the same work.
 */
const Z_IMAGE_TURBO: Omit<KnownModel, "id"> = {
  defaults: { width: 1024, height: 1024, steps: 8, guidanceScale: 0 },
  maxImagePixels: 2048 * 2048,
  maxSteps: 16,
  fixedGuidance: 0,
};

/** Z-Image. */
export const Z_IMAGE: Family = {
  name: "z_image",
  pipelineClasses: ["ZImagePipeline"],
  models: [
    { id: "Tongyi-MAI/Z-Image-Turbo", ...Z_IMAGE_TURBO },
    // Its ONNX export for the WebNN demo (served as published: compute/model/published_layouts.ts).
    { id: "webnn/Z-Image-Turbo", ...Z_IMAGE_TURBO },
  ],
  load: async (graphs, defaults, vae) =>
    (await import("./z_image.ts")).ZImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["ZImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
};
