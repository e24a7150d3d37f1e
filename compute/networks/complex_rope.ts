/**
 * Rotary position embedding as Z-Image's and Qwen-Image's transformers apply it: consecutive pairs
 * of a head's features are complex numbers, each multiplied by `cos + i·sin` of its position.
 *
 * @module
 */
import type { GraphBuilder } from "../graph/onnx_builder.ts";

/**
 * `x` (`[B, L, heads · d]` or `[B, L, heads, d]`) rotated by the angles' `cos` and `sin`
 * (`[B?, L, 1, d/2]`, broadcast over heads): `(a + ib)(cos + i·sin)` on interleaved pairs, then
 * reshaped to `outShape` (0 keeps that axis).
 */
export function rotateComplexPairs(
  g: GraphBuilder,
  x: string,
  r: { cos: string; sin: string },
  heads: number,
  d: number,
  outShape: number[],
): string {
  const i64 = (v: number[]) => g.int64(v);
  const pairs = g.op("Reshape", [x, i64([0, 0, heads, d / 2, 2])]);
  const [a, b] = [0, 1].map((k) =>
    g.op("Squeeze", [g.op("Slice", [pairs, i64([k]), i64([k + 1]), i64([4])]), i64([4])])
  );
  const re = g.op("Sub", [g.op("Mul", [a, r.cos]), g.op("Mul", [b, r.sin])]);
  const im = g.op("Add", [g.op("Mul", [a, r.sin]), g.op("Mul", [b, r.cos])]);
  return g.op("Reshape", [
    g.op("Concat", [g.op("Unsqueeze", [re, i64([4])]), g.op("Unsqueeze", [im, i64([4])])], {
      axis: 4,
    }),
    i64(outShape),
  ]);
}
