/**
 * Decoding latents to pixels in pieces, diffusers' `enable_slicing` and `enable_tiling` (vLLM-Omni's
 * `--vae-use-slicing`, `--vae-use-tiling`): the decoder's activations grow with the pixels it
 * makes at once, so a batch decoded one image at a time, or an image decoded in overlapping tiles
 * whose seams are blended, peaks far lower. Slicing is the default here (unlike diffusers): it
 * gives the same bytes, and on ONNX Runtime's CPU provider it is also faster (docs/benchmarks.md,
 * "VAE slicing and tiling"). A cancelled request stops before its next decoder call. Tiling follows
 * `AutoencoderKL.tiled_decode`: tiles of `tileLatent` latents every `tileLatent · (1 − 0.25)`,
 * each blended linearly into its upper and left neighbours over a quarter of a tile, then cropped
 * to the stride.
 *
 * @module
 */
import { type Backend, readFloat32, type Session } from "../backends/backend.ts";
import { CancelledError } from "../errors.ts";
import { checkFinite } from "./common.ts";
import type { CancelSignal } from "./pipeline.ts";

/** How a pipeline decodes (server settings, not per request). */
export interface VaeDecodeSettings {
  /** Decode a batch one image at a time (default on; `false` decodes it in one call). */
  slicing?: boolean;
  /** Decode each image in overlapping tiles when it is larger than one tile. */
  tiling?: boolean;
}

/** Runs the decoder once: `[n, C, h, w]` latents → `[n, 3, 8h, 8w]` pixels. */
export type DecodeRun = (
  latents: Float32Array,
  n: number,
  h: number,
  w: number,
) => Promise<Float32Array>;

/**
 * The {@linkcode DecodeRun} of a `vae_decoder` graph: latents in as `latent_sample` of `type` and
 * the shape `shape(n, h, w)` gives, `sample` out as float32.
 */
export function decoderRun(
  decoder: Session,
  backend: Backend,
  type: "float32" | "float16",
  shape: (n: number, h: number, w: number) => number[],
): DecodeRun {
  return async (latents, n, h, w) => {
    const decoded = await decoder.run({
      latent_sample: backend.tensor(type, latents, shape(n, h, w)),
    });
    const out = await readFloat32(decoded.sample);
    decoded.sample.dispose();
    return out;
  };
}

/** diffusers' `tile_overlap_factor`. */
const OVERLAP = 0.25;

/**
 * Decodes `[n, channels, h, w]` latents with `run`, whole or in pieces as `settings` say.
 * `tileLatent` is the decoder's tile in latents (diffusers: the VAE's `sample_size / 8`).
 * Throws {@linkcode NonFiniteOutputError} for latents with a NaN or an infinity. Before each call of
 * `run`, an aborted `signal` throws `CancelledError`.
 */
export async function decodeLatents(
  latents: Float32Array,
  shape: { n: number; channels: number; h: number; w: number; scale: number },
  decoder: DecodeRun,
  settings: VaeDecodeSettings,
  tileLatent: number,
  signal?: CancelSignal,
): Promise<Float32Array> {
  checkFinite(latents, "latents");
  const run: DecodeRun = (z, n, h, w) => {
    if (signal?.aborted) throw new CancelledError("Generation cancelled");
    return decoder(z, n, h, w);
  };
  const { n, channels, h, w, scale } = shape;
  const slicing = settings.slicing ?? true;
  const tiled = settings.tiling && (h > tileLatent || w > tileLatent);
  if (!slicing && !tiled) return await run(latents, n, h, w);
  const latentSize = channels * h * w;
  const imageSize = 3 * h * scale * w * scale;
  const out = new Float32Array(n * imageSize);
  // Sliced, tiled or both: one image at a time.
  for (let b = 0; b < n; b++) {
    const z = latents.subarray(b * latentSize, (b + 1) * latentSize);
    const pixels = tiled
      ? await decodeTiled(z, { channels, h, w, scale }, run, tileLatent)
      : await run(z, 1, h, w);
    out.set(pixels, b * imageSize);
  }
  return out;
}

/** One image `[channels, h, w]` → `[3, scale·h, scale·w]`, in blended tiles. */
async function decodeTiled(
  z: Float32Array,
  shape: { channels: number; h: number; w: number; scale: number },
  run: DecodeRun,
  tileLatent: number,
): Promise<Float32Array> {
  const { channels, h, w, scale } = shape;
  const stride = Math.floor(tileLatent * (1 - OVERLAP));
  const tileSample = tileLatent * scale;
  const blend = Math.floor(tileSample * OVERLAP);
  const limit = tileSample - blend;
  // 1. Decode every tile.
  const rows: Tile[][] = [];
  for (let i = 0; i < h; i += stride) {
    const row: Tile[] = [];
    for (let j = 0; j < w; j += stride) {
      const th = Math.min(tileLatent, h - i), tw = Math.min(tileLatent, w - j);
      const crop = new Float32Array(channels * th * tw);
      for (let c = 0; c < channels; c++) {
        for (let y = 0; y < th; y++) {
          const from = (c * h + i + y) * w + j;
          crop.set(z.subarray(from, from + tw), (c * th + y) * tw);
        }
      }
      row.push({ data: await run(crop, 1, th, tw), h: th * scale, w: tw * scale });
    }
    rows.push(row);
  }
  // 2. Blend each tile into its upper and left neighbours (in place, as diffusers does), then
  // 3. keep its top-left `limit × limit` and lay it out.
  const H = h * scale, W = w * scale;
  const out = new Float32Array(3 * H * W);
  rows.forEach((row, i) =>
    row.forEach((tile, j) => {
      if (i > 0) blendVertical(rows[i - 1][j], tile, blend);
      if (j > 0) blendHorizontal(row[j - 1], tile, blend);
      const y0 = i * stride * scale, x0 = j * stride * scale;
      const th = Math.min(limit, tile.h, H - y0), tw = Math.min(limit, tile.w, W - x0);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < th; y++) {
          const from = (c * tile.h + y) * tile.w;
          out.set(tile.data.subarray(from, from + tw), (c * H + y0 + y) * W + x0);
        }
      }
    })
  );
  return out;
}

interface Tile {
  data: Float32Array;
  h: number;
  w: number;
}

/** diffusers' `blend_v`: the top `extent` rows of `b` fade in from the bottom rows of `a`. */
function blendVertical(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.h, b.h, extent);
  const width = Math.min(a.w, b.w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < e; y++) {
      const t = y / e;
      const ar = (c * a.h + a.h - e + y) * a.w, br = (c * b.h + y) * b.w;
      for (let x = 0; x < width; x++) {
        b.data[br + x] = a.data[ar + x] * (1 - t) + b.data[br + x] * t;
      }
    }
  }
}

/** diffusers' `blend_h`: the left `extent` columns of `b` fade in from the right of `a`. */
function blendHorizontal(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.w, b.w, extent);
  const height = Math.min(a.h, b.h);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const ar = (c * a.h + y) * a.w + a.w - e, br = (c * b.h + y) * b.w;
      for (let x = 0; x < e; x++) {
        const t = x / e;
        b.data[br + x] = a.data[ar + x] * (1 - t) + b.data[br + x] * t;
      }
    }
  }
}
