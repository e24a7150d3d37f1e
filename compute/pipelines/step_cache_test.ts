import assert from "node:assert/strict";
import {
  type CacheConfig,
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
  const cache = new StepCache<object>(tea({ warmup: 1, maxCached: 100 }), 4);
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

Deno.test("parseCacheConfig: defaults per backend, and one clear line per bad field", () => {
  assert.deepEqual(parseCacheConfig({ backend: "tea_cache", threshold: 0.3 }), {
    backend: "tea_cache",
    threshold: 0.3,
    warmup: 2,
    maxCached: 2,
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
    ] as const
  ) assert.throws(() => parseCacheConfig(bad), message);
});

Deno.test("relativeL1", () => {
  assert.equal(relativeL1(Float32Array.of(1, 3), Float32Array.of(2, 2)), 0.5);
  assert.equal(relativeL1(Float32Array.of(0), Float32Array.of(0)), 0);
});
