import assert from "node:assert/strict";
import { fmaf, Mt19937, torchRandn } from "./random.ts";

interface RandnCase {
  seed: number;
  shape: number[];
  values: number[];
}

// Seeded torch.randn vectors from torch 1.13 (CPU), kept in the repo so a clone tests alone.
const reference = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/torch-randn-float32.json", import.meta.url)),
) as { cases: RandnCase[] };

for (const c of reference.cases) {
  Deno.test(`torchRandn seed ${c.seed} shape [${c.shape}] equals torch 1.13 bit for bit`, () => {
    const got = torchRandn(c.shape, c.seed);
    assert.equal(got.length, c.values.length);
    const mismatches = c.values.flatMap((v, i) => got[i] === Math.fround(v) ? [] : [i]);
    assert.deepEqual(mismatches, [], `first mismatch at ${mismatches[0]}`);
  });
}

Deno.test("torchRandn accepts bigint seeds and keeps only the low 32 bits", () => {
  assert.deepEqual(torchRandn([20], 2n ** 40n + 7n), torchRandn([20], 7));
});

Deno.test("Mt19937 matches the reference mt19937 first output for seed 5489", () => {
  // std::mt19937 default seed 5489: first output 3499211612.
  assert.equal(new Mt19937(5489).nextUint32(), 3499211612);
});

Deno.test("fmaf rounds once: fma(1+2^-23, 1-2^-23, -1) is -2^-46", () => {
  const a = 1 + 2 ** -23, b = 1 - 2 ** -23;
  assert.equal(fmaf(a, b, -1), -(2 ** -46));
  assert.equal(fmaf(2, 3, 4), 10);
});

Deno.test("torchRandn rejects invalid shapes", () => {
  assert.throws(() => torchRandn([2, -1], 0), RangeError);
  assert.throws(() => torchRandn([1.5], 0), RangeError);
});
