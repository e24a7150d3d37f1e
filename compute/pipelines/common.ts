/**
 * Pieces every pipeline shares: seeds, input checks, batching and the 8-bit RGB conversion.
 *
 * @module
 */
import { InvalidInputError, NonFiniteOutputError, type NonFiniteStage } from "../errors.ts";
import type { Backend, Tensor } from "../backends/backend.ts";
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
      throw new InvalidInputError(
        `${name} must be a positive multiple of ${sizeMultiple} for ${family}, got ${v}`,
      );
    }
  }
  if (!Number.isInteger(o.steps) || o.steps < 1) {
    throw new InvalidInputError(`num_inference_steps must be an integer >= 1, got ${o.steps}`);
  }
  if (!Number.isInteger(o.n) || o.n < 1) {
    throw new InvalidInputError(`n must be an integer >= 1, got ${o.n}`);
  }
  if (!Number.isFinite(o.guidanceScale) || o.guidanceScale < 0) {
    throw new InvalidInputError(
      `guidance_scale must be a finite number >= 0, got ${o.guidanceScale}`,
    );
  }
}

/** Throws {@linkcode NonFiniteOutputError} when `values` holds a NaN or an infinity. */
export function checkFinite(values: Float32Array, stage: NonFiniteStage): void {
  for (let i = 0; i < values.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and ±infinity.
    if (values[i] - values[i] !== 0) throw new NonFiniteOutputError(stage);
  }
}

/**
 * `[n,3,H,W]` floats in [-1,1] → n interleaved 8-bit RGB images (diffusers `postprocess`).
 * Throws {@linkcode NonFiniteOutputError} rather than clamp a NaN or an infinity into a pixel.
 */
export function toRgbImages(
  pixels: Float32Array,
  n: number,
  width: number,
  height: number,
): RgbImage[] {
  checkFinite(pixels, "pixels");
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

/** The arrays one after another. */
export function concatAll(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Encoded prompts of one request: `rows` prompts of `length` tokens × `width` features. */
export interface EncodedText {
  data: Float32Array;
  rows: number;
  length: number;
  width: number;
}

/**
 * The text-feature batch of the members denoised together: each member's encoded prompts with
 * every row repeated `n` times, in member order. The tensor is rebuilt only when the set of
 * members changes (a request finished or was cancelled).
 */
export class TextRows {
  #members: readonly object[] = [];
  #tensor?: Tensor;

  /** `flat`: a `[rows, length × width]` tensor (one vector per row, e.g. SDXL's `time_ids`). */
  constructor(private readonly flat = false) {}

  tensor<M extends { params: { n: number } }>(
    members: readonly M[],
    text: (member: M) => EncodedText,
    backend: Backend,
    type: "float32" | "float16",
  ): Tensor {
    const same = members.length === this.#members.length &&
      members.every((m, i) => m === this.#members[i]);
    if (this.#tensor && same) return this.#tensor;
    this.#tensor?.dispose();
    const { length, width } = text(members[0]);
    const rows = members.flatMap((m) => {
      const { data, rows } = text(m);
      return Array.from({ length: rows }, (_, r) => {
        const row = data.subarray(r * length * width, (r + 1) * length * width);
        return Array<Float32Array>(m.params.n).fill(row);
      }).flat();
    });
    this.#members = members;
    const dims = this.flat ? [rows.length, length * width] : [rows.length, length, width];
    this.#tensor = backend.tensor(type, concatAll(rows), dims);
    return this.#tensor;
  }
}
