/**
 * Fast float32 ⇄ float16 conversion. V8's `Float16Array` element conversions are slow enough to
 * dominate a denoising step's orchestration (measured in `deno task bench`); these work on the
 * bits: round-to-nearest-even packing and a 64 K-entry table for unpacking.
 *
 * @module
 */

/** Every float16 bit pattern's float32 value. */
export const F16_TO_F32 = (() => {
  const bits = new Uint16Array(65536);
  for (let i = 0; i < bits.length; i++) bits[i] = i;
  return Float32Array.from(new Float16Array(bits.buffer));
})();

/**
 * Every bfloat16 bit pattern's float16 bits, rounded to nearest even as from its float32 value
 * (which is exact): the converter narrows bf16 weights to fp16 with one lookup an element.
 */
export const BF16_TO_F16 = (() => {
  const wide = new Uint32Array(65536);
  for (let i = 0; i < wide.length; i++) wide[i] = i << 16;
  return new Uint16Array(Float16Array.from(new Float32Array(wide.buffer)).buffer);
})();

/** Float32 values → a Float16Array (round to nearest even, like `new Float16Array(values)`). */
export function toFloat16(values: Float32Array): Float16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) out[i] = halfBits(src[i]);
  return new Float16Array(out.buffer);
}

/** Float16 values → Float32Array. */
export function fromFloat16(values: Float16Array): Float32Array {
  const bits = new Uint16Array(values.buffer, values.byteOffset, values.length);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = F16_TO_F32[bits[i]];
  return out;
}

function halfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0); // inf / NaN
  const exp = (abs >>> 23) - 112; // rebias 127 → 15
  if (exp >= 31) return sign | 0x7c00; // overflow → inf
  if (exp <= 0) {
    if (exp < -10) return sign; // underflow → ±0
    const mant = (abs & 0x7fffff) | 0x800000;
    const shift = 14 - exp;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (exp << 10) | ((abs >>> 13) & 0x3ff);
  const rest = abs & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // may carry into inf: correct
  return sign | half;
}
