/**
 * Weight quantization for the converter's `--dtype q8|q4`, symmetric (zero point 0, or ONNX
 * Runtime's implied 8 for 4 bits): int8 per output channel, read back by `DequantizeLinear`; and
 * 4-bit blocks of 32 along the input dimension in `MatMulNBits`' layout (com.microsoft).
 *
 * @module
 */

/** Int8 values and one scale per output channel. */
export interface Int8Weights {
  values: Int8Array;
  scales: Float32Array;
}

/** `w` `[rows, cols]`, one scale per row (`DequantizeLinear` axis 0): `w ≈ values · scale`. */
export function int8Rows(w: Float32Array, rows: number): Int8Weights {
  const cols = w.length / rows;
  const scales = new Float32Array(rows);
  const values = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) max = Math.max(max, Math.abs(w[i]));
    const scale = max / 127 || 1;
    scales[r] = scale;
    for (let i = r * cols; i < (r + 1) * cols; i++) values[i] = Math.round(w[i] / scale);
  }
  return { values, scales };
}

/** `w` `[rows, cols]`, one scale per column (`DequantizeLinear` axis 1). */
export function int8Columns(w: Float32Array, rows: number): Int8Weights {
  const cols = w.length / rows;
  const max = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0, i = r * cols; c < cols; c++, i++) max[c] = Math.max(max[c], Math.abs(w[i]));
  }
  const scales = max.map((m) => m / 127 || 1);
  const inverse = scales.map((s) => 1 / s);
  const values = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0, i = r * cols; c < cols; c++, i++) values[i] = Math.round(w[i] * inverse[c]);
  }
  return { values, scales };
}

/** The block size of `MatMulNBits` here (ONNX Runtime's default). */
export const Q4_BLOCK = 32;

/** 4-bit weights in `MatMulNBits`' layout: `packed` `[N, blocks, 16]`, `scales` `[N · blocks]`. */
export interface Q4Weights {
  packed: Uint8Array;
  scales: Float32Array;
  blocks: number;
}

/**
 * torch's `[N, K]` Linear weight → `MatMulNBits`' B: per output row, blocks of 32 inputs (the last
 * zero-padded), each a scale `absmax / 7` and values `round(w / scale) + 8` in 0…15, two per byte
 * (the even element in the low nibble); no zero points, so ONNX Runtime takes 8.
 */
export function q4Blocks(w: Float32Array, n: number): Q4Weights {
  const k = w.length / n;
  const blocks = Math.ceil(k / Q4_BLOCK);
  const packed = new Uint8Array(n * blocks * (Q4_BLOCK / 2));
  const scales = new Float32Array(n * blocks);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocks; b++) {
      const start = row * k + b * Q4_BLOCK, end = row * k + Math.min(k, (b + 1) * Q4_BLOCK);
      let max = 0;
      for (let i = start; i < end; i++) max = Math.max(max, Math.abs(w[i]));
      const scale = max / 7 || 1;
      scales[row * blocks + b] = scale;
      const out = (row * blocks + b) * (Q4_BLOCK / 2);
      for (let i = start; i < end; i++) {
        const q = Math.max(0, Math.min(15, Math.round(w[i] / scale) + 8));
        const j = i - start;
        packed[out + (j >> 1)] |= (j & 1) ? q << 4 : q;
      }
      // Padding elements are zeros: code 8.
      for (let j = end - start; j < Q4_BLOCK; j++) packed[out + (j >> 1)] |= (j & 1) ? 0x80 : 8;
    }
  }
  return { packed, scales, blocks };
}
