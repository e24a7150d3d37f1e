import assert from "node:assert/strict";
import { torchRandn } from "../random.ts";
import { fromFloat16, toFloat16 } from "./float16.ts";

Deno.test("toFloat16 rounds exactly like Float16Array, including subnormals, overflow and NaN", () => {
  const edge = [
    0,
    -0,
    1,
    -1,
    65504,
    65519,
    65520,
    1e6,
    -1e6,
    6.1e-5,
    5.96e-8,
    2.98e-8,
    2.99e-8,
    1e-9,
    Infinity,
    -Infinity,
    NaN,
  ];
  const random = Array.from(torchRandn([4096], 1), (x, i) => x * 10 ** ((i % 14) - 8));
  const values = Float32Array.from([...edge, ...random]);
  const ours = new Uint16Array(toFloat16(values).buffer);
  const reference = new Uint16Array(new Float16Array(values).buffer);
  assert.deepEqual(ours, reference);
});

Deno.test("fromFloat16 inverts toFloat16 on every half-precision value", () => {
  const bits = new Uint16Array(65536).map((_, i) => i);
  const halves = new Float16Array(bits.buffer);
  const ours = fromFloat16(halves);
  assert.deepEqual(ours, Float32Array.from(halves));
});
