/**
 * 2×2 latent patch packing (diffusers `QwenImagePipeline._pack_latents` / `_unpack_latents`,
 * shared with Flux): `[B,C,H,W] ⇄ [B,(H/2)(W/2),C·4]` with feature index `c·4 + dy·2 + dx`.
 *
 * @module
 */

/** Calls `fn(unpackedIndex, packedIndex)` for every element of a `[batch, channels, height, width]` latent. */
function forEachPatchIndex(
  batch: number,
  channels: number,
  height: number,
  width: number,
  fn: (unpacked: number, packed: number) => void,
): void {
  if (height % 2 || width % 2) throw new RangeError(`latent size ${height}x${width} must be even`);
  const tokens = (height / 2) * (width / 2), features = channels * 4;
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const token = (y >> 1) * (width / 2) + (x >> 1);
          const feature = c * 4 + (y & 1) * 2 + (x & 1);
          fn(
            ((b * channels + c) * height + y) * width + x,
            (b * tokens + token) * features + feature,
          );
        }
      }
    }
  }
}

/** Packs `[batch, channels, height, width]` latents into `[batch, (h/2)(w/2), channels·4]`. */
export function packLatents(
  x: Float32Array,
  batch: number,
  channels: number,
  height: number,
  width: number,
): Float32Array {
  const out = new Float32Array(x.length);
  forEachPatchIndex(batch, channels, height, width, (u, p) => (out[p] = x[u]));
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
  const out = new Float32Array(p.length);
  forEachPatchIndex(batch, channels, height, width, (u, q) => (out[u] = p[q]));
  return out;
}
