import assert from "node:assert/strict";
import { pairedComparison } from "./score.ts";

Deno.test("pairedComparison counts the images only one setting draws right", () => {
  const a = [true, true, true, false, true, false];
  const b = [true, false, false, true, true, false];
  const c = pairedComparison(a, b);
  assert.deepEqual([c.onlyA, c.onlyB], [2, 1]);
  // 3 discordant images split 2:1: P(K ≤ 1) = 4/8, two-sided 1 (capped).
  assert.deepEqual(c.p, 1);
});

Deno.test("pairedComparison's p-value is the exact two-sided sign test", () => {
  // 10 discordant images, all one way: 2 · 0.5^10.
  const ten = Array.from({ length: 10 }, () => true);
  const none = ten.map(() => false);
  assert.ok(Math.abs(pairedComparison(ten, none).p - 2 / 1024) < 1e-15);
  // 20 discordant, split 15:5: 2 · Σ_{k≤5} C(20, k) / 2^20 = 2 · 21700 / 1048576.
  const a = [...Array(15).fill(true), ...Array(5).fill(false)];
  const b = a.map((x) => !x);
  assert.ok(Math.abs(pairedComparison(a, b).p - 2 * 21700 / 1048576) < 1e-12);
  // 2,000 discordant images, 1,000 each way: p = 1 (0.5^2000 alone would underflow to 0).
  const half = Array.from({ length: 2000 }, (_, i) => i < 1000);
  assert.ok(pairedComparison(half, half.map((x) => !x)).p > 0.95);
  // No discordant images: no evidence either way.
  assert.deepEqual(pairedComparison([true, false], [true, false]), { onlyA: 0, onlyB: 0, p: 1 });
});

Deno.test("pairedComparison refuses verdicts on different image sets", () => {
  assert.throws(() => pairedComparison([true], [true, false]), RangeError);
});
