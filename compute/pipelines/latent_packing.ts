/**
 * 2×2 latent patch packing (diffusers `QwenImagePipeline._pack_latents` / `_unpack_latents`,
 * shared with Flux): `[B,C,H,W] ⇄ [B,(H/2)(W/2),C·4]` with feature index `c·4 + dy·2 + dx`.
 *
 * @module
 */

/** Packs `[batch, channels, height, width]` latents into `[batch, (h/2)(w/2), channels·4]`. */
export function packLatents(
  x: Float32Array,
  batch: number,
  channels: number,
  height: number,
  width: number,
): Float32Array {
  if (height % 2 || width % 2) throw new RangeError(`latent size ${height}x${width} must be even`);
  const h2 = height / 2, w2 = width / 2, features = channels * 4;
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let xx = 0; xx < width; xx++) {
          const token = (y >> 1) * w2 + (xx >> 1);
          const feature = c * 4 + (y & 1) * 2 + (xx & 1);
          out[(b * h2 * w2 + token) * features + feature] =
            x[((b * channels + c) * height + y) * width + xx];
        }
      }
    }
  }
  return out;
}

/** Inverse of {@linkcode packLatents}. */
export function unpackLatents(
  p: Float32Array,
  batch: number,
  channels: number,
  height: number,
  width: number,
): Float32Array {
  const h2 = height / 2, w2 = width / 2, features = channels * 4;
  const out = new Float32Array(p.length);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let xx = 0; xx < width; xx++) {
          const token = (y >> 1) * w2 + (xx >> 1);
          const feature = c * 4 + (y & 1) * 2 + (xx & 1);
          out[((b * channels + c) * height + y) * width + xx] =
            p[(b * h2 * w2 + token) * features + feature];
        }
      }
    }
  }
  return out;
}
