/**
 * Pieces every pipeline shares: seeds, input checks, batching and the 8-bit RGB conversion.
 *
 * @module
 */
import type { GenerateOptions, RgbImage } from "./pipeline.ts";

/** Draws a random 32-bit seed, like vLLM-Omni's `random.randint(0, 2**32 - 1)`. */
export function randomSeed(): bigint {
  return BigInt(crypto.getRandomValues(new Uint32Array(1))[0]);
}

/** Throws `RangeError` when a generation parameter is out of range (diffusers `check_inputs`). */
export function checkGenerateOptions(
  o: Required<Pick<GenerateOptions, "width" | "height" | "steps" | "guidanceScale" | "n">>,
  family: string,
  sizeMultiple: number,
): void {
  for (const [name, v] of [["width", o.width], ["height", o.height]] as const) {
    if (!Number.isInteger(v) || v < sizeMultiple || v % sizeMultiple !== 0) {
      throw new RangeError(
        `${name} must be a positive multiple of ${sizeMultiple} for ${family}, got ${v}`,
      );
    }
  }
  if (!Number.isInteger(o.steps) || o.steps < 1) {
    throw new RangeError(`num_inference_steps must be an integer >= 1, got ${o.steps}`);
  }
  if (!Number.isInteger(o.n) || o.n < 1) {
    throw new RangeError(`n must be an integer >= 1, got ${o.n}`);
  }
  if (!Number.isFinite(o.guidanceScale) || o.guidanceScale < 0) {
    throw new RangeError(`guidance_scale must be a finite number >= 0, got ${o.guidanceScale}`);
  }
}

/** `a` followed by `b`. */
export function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** `[n,3,H,W]` floats in [-1,1] → n interleaved 8-bit RGB images (diffusers `postprocess`). */
export function toRgbImages(
  pixels: Float32Array,
  n: number,
  width: number,
  height: number,
): RgbImage[] {
  const plane = width * height;
  return Array.from({ length: n }, (_, b) => {
    const data = new Uint8Array(plane * 3);
    const base = b * 3 * plane;
    for (let c = 0; c < 3; c++) {
      const src = base + c * plane;
      for (let i = 0; i < plane; i++) {
        const v = pixels[src + i] * 0.5 + 0.5;
        data[i * 3 + c] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
      }
    }
    return { width, height, data };
  });
}
