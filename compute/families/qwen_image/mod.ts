/**
 * Qwen-Image: the {@linkcode Family}.
 *
 * @module
 */
import type { LatentRgbFactors } from "../../pipelines/preview.ts";
import type { Family } from "../family.ts";

/** The Wan 2.1 VAE (Qwen-Image), normalised latents `(z − mean)/std`. */
const WAN21_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [-0.1299, -0.1692, 0.2932],
    [0.0671, 0.0406, 0.0442],
    [0.3568, 0.2548, 0.1747],
    [0.0372, 0.2344, 0.142],
    [0.0313, 0.0189, -0.0328],
    [0.0296, -0.0956, -0.0665],
    [-0.3477, -0.4059, -0.2925],
    [0.0166, 0.1902, 0.1975],
    [-0.0412, 0.0267, -0.1364],
    [-0.1293, 0.074, 0.1636],
    [0.068, 0.3019, 0.1128],
    [0.0032, 0.0581, 0.0639],
    [-0.1251, 0.0927, 0.1699],
    [0.006, -0.0633, 0.0005],
    [0.3477, 0.2275, 0.295],
    [0.1984, 0.0913, 0.1861],
  ],
  bias: [-0.1835, -0.0868, -0.336],
};

/** Wan 2.1's per-channel latent mean, which identifies Qwen-Image's VAE in its config. */
export const WAN21_LATENTS_MEAN: readonly number[] = [
  -0.7571,
  -0.7089,
  -0.9113,
  0.1075,
  -0.1745,
  0.9653,
  -0.1517,
  1.5508,
  0.4134,
  -0.0715,
  0.5517,
  -0.3632,
  -0.1922,
  -0.9497,
  0.2503,
  -0.2921,
];

/** Qwen-Image. */
export const QWEN_IMAGE = {
  name: "qwen_image",
  pipelineClasses: ["QwenImagePipeline"],
  models: [{
    id: "Qwen/Qwen-Image",
    defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 1, trueCfgScale: 4 },
    // vLLM-Omni's Qwen-Image tests use 1664×928; its demo offers sides up to 2048.
    maxImagePixels: 2048 * 2048,
  }],
  defaults: { width: 1024, height: 1024, steps: 50, guidanceScale: 1, trueCfgScale: 4 },
  sizeMultiple: 16,
  denoiser: "transformer",
  stepCacheSignal: {
    // The input of `transformer_blocks.0`'s image `to_q`: its timestep-modulated input.
    tea_cache: [{ prefix: "/transformer_blocks.0/attn/to_q/", take: "input" }],
    // The first block's image feed-forward output (`img_mlp`), its last residual branch.
    cache_dit: [{ prefix: "/transformer_blocks.0/img_mlp/net.2/", take: "output" }],
  },
  preview: { factors: WAN21_LATENT_RGB, vae: { latentsMean: WAN21_LATENTS_MEAN } },
  load: async (graphs, defaults, vae) =>
    (await import("./qwen_image.ts")).QwenImagePipeline.load(graphs, defaults, vae),
  convert: {
    pipelineClasses: ["QwenImagePipeline"],
    components: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
    tokenizer: "qwen2",
  },
} satisfies Family;
