/**
 * Z-Image (Turbo): the {@linkcode Family}.
 *
 * @module
 */
import type { LatentRgbFactors } from "../../pipelines/preview.ts";
import type { Family, KnownModel } from "../family.ts";

/** The Flux VAE (Z-Image), model-space latents `(z − 0.1159)·0.3611`. */
const FLUX_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [-0.0346, 0.0244, 0.0681],
    [0.0034, 0.021, 0.0687],
    [0.0275, -0.0668, -0.0433],
    [-0.0174, 0.016, 0.0617],
    [0.0859, 0.0721, 0.0329],
    [0.0004, 0.0383, 0.0115],
    [0.0405, 0.0861, 0.0915],
    [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.025, 0.118],
    [0.1008, 0.0755, -0.0421],
    [-0.0515, 0.0201, 0.0011],
    [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749],
    [-0.1264, -0.0522, -0.1103],
    [-0.028, -0.0881, -0.0499],
    [-0.1262, -0.0982, -0.0778],
  ],
  bias: [-0.0329, -0.0718, -0.0851],
};

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
export const Z_IMAGE = {
  name: "z_image",
  pipelineClasses: ["ZImagePipeline"],
  models: [
    { id: "Tongyi-MAI/Z-Image-Turbo", ...Z_IMAGE_TURBO },
    // Its ONNX export for the WebNN demo (served as published: compute/model/published_layouts.ts).
    { id: "webnn/Z-Image-Turbo", ...Z_IMAGE_TURBO },
  ],
  defaults: { width: 1024, height: 1024, steps: 8, guidanceScale: 0 },
  sizeMultiple: 16,
  denoiser: "transformer",
  stepCacheSignal: {
    // The input of `noise_refiner.0`'s (or, in our bench blocks, `layers.0`'s) `to_q`
    // (RMSNorm · (1 + scale)): the first block's timestep-modulated input.
    tea_cache: [
      { prefix: "/noise_refiner.0/attention/to_q/", take: "input" },
      { prefix: "/layers.0/attention/to_q/", take: "input" },
    ],
    // The first block's feed-forward output (`w2`), its last residual branch.
    cache_dit: [
      { prefix: "/noise_refiner.0/feed_forward/w2/", take: "output" },
      { prefix: "/layers.0/feed_forward/w2/", take: "output" },
    ],
  },
  preview: { factors: FLUX_LATENT_RGB, vae: { scalingFactor: 0.3611, shiftFactor: 0.1159 } },
  load: async (graphs, defaults, vae) =>
    (await import("./z_image.ts")).ZImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["ZImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
} satisfies Family;
