/**
 * Cheap previews: a linear map from a model family's latent channels to RGB, applied to x̂₀ at
 * latent resolution (1/8 of the output). The factors are the community's fits for each VAE
 * (ComfyUI's `comfy/latent_formats.py`), held by each family's descriptor (`Family.preview`); a
 * model whose VAE is not the one they fit is previewed with its own VAE decoder instead.
 *
 * @module
 */
import type { RgbImage } from "./pipeline.ts";

/** Latent channels → RGB in ≈[−1, 1]: `rgb = Σ_c z_c · matrix[c] + bias`. */
export interface LatentRgbFactors {
  matrix: readonly (readonly [number, number, number])[];
  bias?: readonly [number, number, number];
}

/** The VAE config values that identify a latent space (those a {@linkcode LatentPreview} names). */
export interface VaeIdentity {
  scalingFactor?: number;
  shiftFactor?: number;
  latentsMean?: readonly number[];
}

/** A family's preview: its factors and the VAE they were fitted to. */
export interface LatentPreview {
  factors: LatentRgbFactors;
  /** The values of the fitted VAE's config; a VAE differing in any of them is decoded instead. */
  vae: VaeIdentity;
}

/** Whether `vae` (a model folder's VAE config) is the one `preview`'s factors fit. */
export function previewFits(preview: LatentPreview, vae: VaeIdentity): boolean {
  const want = preview.vae;
  return (want.scalingFactor === undefined || vae.scalingFactor === want.scalingFactor) &&
    (want.shiftFactor === undefined || vae.shiftFactor === want.shiftFactor) &&
    (want.latentsMean === undefined ||
      (vae.latentsMean?.every((v, c) => v === want.latentsMean![c]) ?? false));
}

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
