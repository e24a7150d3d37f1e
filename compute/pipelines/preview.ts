/**
 * Cheap previews: a linear map from a model family's latent channels to RGB, applied to x̂₀ at
 * latent resolution (1/8 of the output). The factors are the community's fits for each VAE
 * (ComfyUI's `comfy/latent_formats.py`); a model whose VAE
 * is not one of these is previewed with its own VAE decoder instead.
 *
 * @module
 */
import type { RgbImage } from "./pipeline.ts";

/** Latent channels → RGB in ≈[−1, 1]: `rgb = Σ_c z_c · matrix[c] + bias`. */
export interface LatentRgbFactors {
  matrix: readonly (readonly [number, number, number])[];
  bias?: readonly [number, number, number];
}

/** SD 1.x / 2.x / SD-Turbo VAE (scaling factor 0.18215), model-space latents. */
export const SD_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [0.3512, 0.2297, 0.3227],
    [0.325, 0.4974, 0.235],
    [-0.2829, 0.1762, 0.2721],
    [-0.212, -0.2616, -0.7177],
  ],
};

/** SDXL / SDXL-Turbo VAE (scaling factor 0.13025), model-space latents. */
export const SDXL_LATENT_RGB: LatentRgbFactors = {
  matrix: [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
  ],
  bias: [0.1084, -0.0175, -0.0011],
};

/** The Flux VAE (Z-Image), model-space latents `(z − 0.1159)·0.3611`. */
export const FLUX_LATENT_RGB: LatentRgbFactors = {
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

/** The Wan 2.1 VAE (Qwen-Image), normalised latents `(z − mean)/std`. */
export const WAN21_LATENT_RGB: LatentRgbFactors = {
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

/** `[n, C, h, w]` latents → n RGB images of `w × h` through `factors`. */
export function latentsToRgb(
  latents: Float32Array,
  n: number,
  height: number,
  width: number,
  factors: LatentRgbFactors,
): RgbImage[] {
  const channels = factors.matrix.length, plane = height * width;
  const bias = factors.bias ?? [0, 0, 0];
  return Array.from({ length: n }, (_, b) => {
    const data = new Uint8Array(plane * 3);
    for (let p = 0; p < plane; p++) {
      for (let o = 0; o < 3; o++) {
        let v = bias[o];
        for (let c = 0; c < channels; c++) {
          v += latents[(b * channels + c) * plane + p] * factors.matrix[c][o];
        }
        const u = (v + 1) / 2;
        data[p * 3 + o] = Math.round((u < 0 ? 0 : u > 1 ? 1 : u) * 255);
      }
    }
    return { width, height, data };
  });
}
