import assert from "node:assert/strict";
import {
  type CacheConfig,
  extrapolate,
  parseCacheConfig,
  relativeL1,
  StepCache,
  StepCachePolicy,
} from "./step_cache.ts";

/** A signal that changes by `rate` (relative) per step. */
const drifting = (rate: number) => (i: number) =>
  Float32Array.of(1, 2).map((x) => x * (1 + rate) ** i);

/** The decisions of a run as a string: `.` full, `c` cached. */
function run(config: CacheConfig, total: number, signal: (i: number) => Float32Array): string {
  const policy = new StepCachePolicy(config, total);
  let out = "";
  for (let i = 0; i < total; i++) {
    out += policy.reuse(i, policy.wantsSignal(i) ? signal(i) : undefined) ? "c" : ".";
  }
  return out;
}

/** The outputs themselves over the step index (only TaylorSeer uses it). */
const SPACE = {
  timestep: (_: unknown, i: number) => i,
  original: (_: unknown, __: number, output: Float32Array) => output,
  output: (_: unknown, __: number, original: Float32Array) => original,
};

const tea = (over: Partial<CacheConfig> = {}): CacheConfig => ({
  backend: "tea_cache",
  threshold: 0.25,
  warmup: 2,
  maxCached: 3,
  ...over,
});

Deno.test("warm-up steps and the last step are always full, whatever the signal", () => {
  const still = () => Float32Array.of(1, 2);
  assert.equal(run(tea({ warmup: 3, maxCached: 100 }), 8, still), "...cccc.");
  assert.equal(run({ ...tea(), backend: "cache_dit", maxCached: 100 }, 6, still), "..ccc.");
});

Deno.test("cached steps in a row are capped", () => {
  const still = () => Float32Array.of(1, 2);
  assert.equal(run(tea({ maxCached: 2 }), 10, still), "..cc.cc.c.");
  assert.equal(run(tea({ warmup: 0, maxCached: 1 }), 6, still), ".c.c..");
});

Deno.test("tea_cache accumulates the change until it reaches the threshold", () => {
  // 10 % a step: 0.1, then 0.2, then 0.3 ≥ 0.25 runs in full and starts again.
  assert.equal(run(tea({ maxCached: 100 }), 9, drifting(0.1)), "..cc.cc..");
  // A change above the threshold every step: nothing is cached.
  assert.equal(run(tea(), 8, drifting(0.3)), "........");
  // The rescaling polynomial: 2·d doubles each change, so only one step fits.
  assert.equal(
    run(tea({ maxCached: 100, coefficients: [2, 0] }), 8, drifting(0.1)),
    "..c.c.c.",
  );
});

Deno.test("cache_dit compares with the last full step, not the previous one", () => {
  // 10 % a step from the reference: 0.1, 0.21 (< 0.25), 0.331 (full).
  assert.equal(
    run({ ...tea({ maxCached: 100 }), backend: "cache_dit" }, 9, drifting(0.1)),
    "..cc.cc..",
  );
});

Deno.test("no signal (a graph without the tensor, or backend none): every step full", () => {
  const policy = new StepCachePolicy(tea(), 6);
  for (let i = 0; i < 6; i++) assert.equal(policy.reuse(i, undefined), false);
  assert.equal(run({ ...tea(), backend: "none" }, 6, () => Float32Array.of(1)), "......");
});

Deno.test("StepCache reuses each member's last full output and skips predict", async () => {
  const cache = new StepCache<object>(tea({ warmup: 1, maxCached: 100 }), 4, SPACE);
  const members = [{}, {}];
  let calls = 0;
  const hooks = {
    predict: (active: object[], i: number) => {
      calls++;
      return Promise.resolve(active.map((_, k) => Float32Array.of(i, k)));
    },
    signal: () => Promise.resolve(Float32Array.of(1)),
  };
  const steps = [];
  for (let i = 0; i < 4; i++) steps.push(await cache.predict(members, i, hooks));
  assert.deepEqual(steps.map((s) => s.cached), [false, true, true, false]);
  assert.deepEqual([...steps[2].outputs[1]], [0, 1]);
  assert.equal(calls, 2);
  assert.equal(cache.cachedSteps, 2);
});

Deno.test("extrapolate: the polynomial through the full outputs, at the cached step's timestep", () => {
  const at = (t: number, ...output: number[]) => ({ t, output: Float32Array.from(output) });
  // First order, the brief's formula: out₁ + (out₁ − out₀)·(t − t₁)/(t₁ − t₀), timesteps unevenly
  // spaced (801 → 701 → 501: the last move is twice the first).
  const newest = at(701, 3, -1), older = at(801, 1, 1);
  assert.deepEqual([...extrapolate([newest, older], 501)], [3 + 2 * 2, -1 - 2 * 2]);
  // Second order recovers a quadratic exactly: y = t² − 3t at t = 4 from t = 3, 2, 1.
  const quadratic = (t: number) => at(t, t * t - 3 * t);
  assert.deepEqual([...extrapolate([3, 2, 1].map(quadratic), 4)], [4]);
  // …where first order follows the last slope only: 0 + (0 − (−2))·1.
  assert.deepEqual([...extrapolate([3, 2].map(quadratic), 4)], [2]);
  // A point at a newer point's timestep is left out instead of dividing by zero.
  assert.deepEqual([...extrapolate([newest, at(701, 9, 9), older], 501)], [7, -5]);
});

Deno.test("StepCache with TaylorSeer: a cached step extrapolates each member's full outputs", async () => {
  const timesteps = [900, 800, 600, 500, 300];
  const cache = new StepCache<{ k: number }>(
    tea({ warmup: 2, maxCached: 1, taylorseer: 1 }),
    5,
    {
      timestep: (_, i) => timesteps[i],
      // x̂₀ = 2·output: extrapolated in x̂₀, handed back as an output.
      original: (_, __, output) => output.map((x) => 2 * x),
      output: (_, __, x0) => x0.map((x) => x / 2),
    },
  );
  const reuse = new StepCache<{ k: number }>(tea({ warmup: 2, maxCached: 1 }), 5, SPACE);
  const members = [{ k: 0 }, { k: 1 }];
  // A full step's output: linear in the timestep, a different line per member.
  const hooks = {
    predict: (active: { k: number }[], i: number) =>
      Promise.resolve(active.map((m) => Float32Array.of(timesteps[i] / 100 + m.k, m.k))),
    signal: () => Promise.resolve(Float32Array.of(1)),
  };
  for (let i = 0; i < 5; i++) {
    const [got, reused] = [
      await cache.predict(members, i, hooks),
      await reuse.predict(members, i, hooks),
    ];
    assert.equal(got.cached, i === 2, `step ${i}`);
    assert.equal(reused.cached, got.cached);
    if (!got.cached) continue;
    // Step 2 (t = 600) from the full steps at 900 and 800: the line continued, 6 + k.
    assert.deepEqual(got.outputs.map((o) => [...o]), [[6, 0], [7, 1]]);
    // Plain caching reuses step 1's output (t = 800) as it is.
    assert.deepEqual(reused.outputs.map((o) => [...o]), [[8, 0], [9, 1]]);
  }
  assert.equal(cache.cachedSteps, 1);
});

Deno.test("parseCacheConfig: defaults per backend, and one clear line per bad field", () => {
  assert.deepEqual(parseCacheConfig({ backend: "tea_cache", threshold: 0.3 }), {
    backend: "tea_cache",
    threshold: 0.3,
    warmup: 2,
    maxCached: 2,
    taylorseer: 1,
  });
  assert.equal(parseCacheConfig({}, "cache_dit").backend, "cache_dit");
  // vLLM-Omni's names for the same settings.
  assert.deepEqual(
    parseCacheConfig({
      residual_diff_threshold: 0.1,
      max_warmup_steps: 3,
      max_continuous_cached_steps: 4,
    }, "cache_dit"),
    { backend: "cache_dit", threshold: 0.1, warmup: 3, maxCached: 4 },
  );
  // TaylorSeer, in cache-dit's names: order 1 unless given; a fallback's order carries over.
  const seer = parseCacheConfig({ enable_taylorseer: true }, "tea_cache");
  assert.equal(seer.taylorseer, 1);
  assert.equal(parseCacheConfig({ taylorseer_order: 2 }, seer).taylorseer, 2);
  assert.equal(parseCacheConfig({ threshold: 0.5 }, seer).taylorseer, 1);
  assert.equal(parseCacheConfig({ enable_taylorseer: false }, seer).taylorseer, undefined);
  for (
    const [bad, message] of [
      [[], /must be a JSON object/],
      [{ backend: "deep" }, /backend must be one of none, tea_cache, cache_dit/],
      [{ threshold: 0 }, /threshold must be a number in \(0, 10\]/],
      [{ warmup: 1.5 }, /warmup must be an integer ≥ 0/],
      [{ max_cached: 0 }, /max_cached must be an integer ≥ 1/],
      [{ coefficients: ["a"] }, /coefficients must be a list of 1–8 numbers/],
      [{ rel_l1: 0.2 }, /unknown field "rel_l1" \(known: backend, .*rel_l1_thresh/],
      [{ threshold: 0.2, rel_l1_thresh: 0.2 }, /rel_l1_thresh gives threshold a second time/],
      [{ enable_taylorseer: "yes" }, /enable_taylorseer must be true or false/],
      [
        { enable_taylorseer: true, taylorseer_order: 3 },
        /taylorseer_order must be an integer from 1 to 2/,
      ],
      [{ backend: "cache_dit", taylorseer_order: 2 }, /taylorseer_order needs enable_taylorseer/],
      [{ enable_taylorseer: false, taylorseer_order: 2 }, /taylorseer_order needs enable_tay/],
    ] as const
  ) assert.throws(() => parseCacheConfig(bad), message);
});

Deno.test("relativeL1", () => {
  assert.equal(relativeL1(Float32Array.of(1, 3), Float32Array.of(2, 2)), 0.5);
  assert.equal(relativeL1(Float32Array.of(0), Float32Array.of(0)), 0);
});
