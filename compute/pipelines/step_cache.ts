/**
 * Step caching (vLLM-Omni's `cache_backend`): on a step where the denoiser's input has barely
 * changed since the last full call, the denoiser is not run and the output of the last full call
 * is reused (for a UNet the noise prediction, for a DiT the velocity: the denoiser's whole
 * residual). What decides is a cheap *signal*, a tensor from inside the denoiser graph computed by
 * a sub-graph cut out of it on first use (./signal_graph.ts):
 *
 * - `tea_cache` (TeaCache): the first block's timestep-modulated input. Its relative L1 change
 *   from the previous step, rescaled by a polynomial (identity unless `coefficients` are given:
 *   TeaCache's fitted ones belong to other models), is accumulated; while the sum stays below
 *   `threshold` steps are cached, and a full step resets it.
 * - `cache_dit` (first-block caching, DBCache with one front block and no back blocks): the first
 *   block's output residual. A step is cached while its relative L1 distance from the residual of
 *   the last full step is below `threshold`. Unlike DBCache, the remaining blocks are not run on
 *   a cached step: the graph is one session, so the whole output is reused.
 *
 * Always full: the first `warmup` steps, the last step, a step after `maxCached` cached ones in a
 * row, and every step of a batch whose graph has no signal tensor.
 *
 * What a cached step gets: the last full output unchanged, or with `taylorseer` (cache-dit's
 * TaylorSeer, vLLM-Omni's `enable_taylorseer`/`taylorseer_order`) the output for the polynomial
 * through the last `taylorseer + 1` full steps' x̂₀, extrapolated to the step's timestep
 * ({@linkcode extrapolate}, {@linkcode PredictionSpace}).
 *
 * @module
 */

/** vLLM-Omni's `--cache-backend` values. */
export const CACHE_BACKENDS = ["none", "tea_cache", "cache_dit"] as const;
/** Which step cache a run uses. */
export type CacheBackend = typeof CACHE_BACKENDS[number];

/** A step cache and its settings (`--cache-config`, or a request's `cache` field). */
export interface CacheConfig {
  backend: CacheBackend;
  /** Cache while the (accumulated) relative L1 change is below this. */
  threshold: number;
  /** Full steps at the start. */
  warmup: number;
  /** At most this many cached steps in a row. */
  maxCached: number;
  /** TeaCache's rescaling polynomial, highest power first (`numpy.poly1d` order). */
  coefficients?: number[];
  /**
   * TaylorSeer's order (1 or 2): a cached step extrapolates the x̂₀ of the last full steps
   * instead of reusing the last output ({@linkcode PredictionSpace}). Absent: reuse.
   */
  taylorseer?: number;
}

/**
 * Defaults per backend, chosen on the embedded model (docs/benchmarks.md, "Step caching"): the
 * settings that saved the most denoiser FLOPs while the held-out score stayed within the noise of
 * the uncached one (image by image, sign test p > 0.05), chosen on other seeds than those scored.
 */
export const CACHE_DEFAULTS: Record<Exclude<CacheBackend, "none">, Omit<CacheConfig, "backend">> = {
  tea_cache: { threshold: 1, warmup: 2, maxCached: 2, taylorseer: 1 },
  cache_dit: { threshold: 0.25, warmup: 2, maxCached: 3 },
};

/** Every step in full. */
export const NO_CACHE: CacheConfig = { backend: "none", threshold: 1, warmup: 0, maxCached: 1 };

const FIELDS = [
  "backend",
  "threshold",
  "warmup",
  "max_cached",
  "coefficients",
  "enable_taylorseer",
  "taylorseer_order",
] as const;
/** Highest TaylorSeer order (cache-dit allows more; each order needs one more full output kept). */
export const MAX_TAYLORSEER_ORDER = 2;
/** The names vLLM-Omni's `--cache-config` uses (TeaCache's and cache-dit's own) → ours. */
const ALIASES: Record<string, typeof FIELDS[number]> = {
  rel_l1_thresh: "threshold",
  residual_diff_threshold: "threshold",
  max_warmup_steps: "warmup",
  max_continuous_cached_steps: "max_cached",
};

/**
 * A cache configuration from its JSON form (`--cache-config`, the request's `cache` field):
 * `backend` (default `fallback`), `threshold` (> 0), `warmup` (integer ≥ 0), `max_cached`
 * (integer ≥ 1), `coefficients` (numbers), or vLLM-Omni's names for them (`rel_l1_thresh`,
 * `residual_diff_threshold`, `max_warmup_steps`, `max_continuous_cached_steps`),
 * `enable_taylorseer` (boolean) and `taylorseer_order` (1 or 2, default 1; only with TaylorSeer
 * on, cache-dit's names); absent values take `fallback`'s values when it is a configuration of the same backend, else the backend's
 * defaults. Throws a `RangeError` with a one-line message naming the bad field.
 */
export function parseCacheConfig(
  value: unknown,
  fallback: CacheBackend | CacheConfig = "none",
): CacheConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RangeError("must be a JSON object");
  }
  const v: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    const name = ALIASES[key] ?? key;
    if (!(FIELDS as readonly string[]).includes(name)) {
      const known = [...FIELDS, ...Object.keys(ALIASES)].join(", ");
      throw new RangeError(`unknown field "${key}" (known: ${known})`);
    }
    if (name in v) throw new RangeError(`${key} gives ${name} a second time`);
    v[name] = field;
  }
  const backend = v.backend ?? (typeof fallback === "string" ? fallback : fallback.backend);
  if (!(CACHE_BACKENDS as readonly unknown[]).includes(backend)) {
    throw new RangeError(`backend must be one of ${CACHE_BACKENDS.join(", ")}`);
  }
  const base = typeof fallback === "object" && fallback.backend === backend
    ? fallback
    : CACHE_DEFAULTS[(backend === "none" ? "tea_cache" : backend) as "tea_cache" | "cache_dit"];
  const number = (key: string, ok: (n: number) => boolean, expected: string, dflt: number) => {
    if (v[key] === undefined) return dflt;
    const n = v[key];
    if (typeof n !== "number" || !Number.isFinite(n) || !ok(n)) {
      throw new RangeError(`${key} must be ${expected}`);
    }
    return n;
  };
  const config: CacheConfig = {
    backend: backend as CacheBackend,
    threshold: number("threshold", (n) => n > 0 && n <= 10, "a number in (0, 10]", base.threshold),
    warmup: number("warmup", (n) => Number.isInteger(n) && n >= 0, "an integer ≥ 0", base.warmup),
    maxCached: number(
      "max_cached",
      (n) => Number.isInteger(n) && n >= 1,
      "an integer ≥ 1",
      base.maxCached,
    ),
  };
  if (base.coefficients && v.coefficients === undefined) config.coefficients = base.coefficients;
  if (v.coefficients !== undefined) {
    const c = v.coefficients;
    if (
      !Array.isArray(c) || c.length === 0 || c.length > 8 ||
      !c.every((x) => typeof x === "number" && Number.isFinite(x))
    ) throw new RangeError("coefficients must be a list of 1–8 numbers");
    config.coefficients = c;
  }
  const taylorseer = taylorseerOrder(v.enable_taylorseer, v.taylorseer_order, base.taylorseer);
  if (taylorseer) config.taylorseer = taylorseer;
  return config;
}

/** TaylorSeer's order from `enable_taylorseer` and `taylorseer_order` (0: off). */
function taylorseerOrder(enable: unknown, order: unknown, fallback = 0): number {
  if (enable !== undefined && typeof enable !== "boolean") {
    throw new RangeError("enable_taylorseer must be true or false");
  }
  if (
    order !== undefined &&
    !(Number.isInteger(order) && (order as number) >= 1 &&
      (order as number) <= MAX_TAYLORSEER_ORDER)
  ) throw new RangeError(`taylorseer_order must be an integer from 1 to ${MAX_TAYLORSEER_ORDER}`);
  const on = enable ?? fallback > 0;
  if (!on) {
    if (order !== undefined) throw new RangeError("taylorseer_order needs enable_taylorseer: true");
    return 0;
  }
  return (order as number | undefined) ?? (fallback || 1);
}

/** Mean |a − b| over mean |b|: the distance both backends compare with their threshold. */
export function relativeL1(a: Float32Array, b: Float32Array): number {
  let diff = 0, norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += Math.abs(a[i] - b[i]);
    norm += Math.abs(b[i]);
  }
  return norm === 0 ? (diff === 0 ? 0 : Infinity) : diff / norm;
}

/** `coefficients` as a polynomial at `x` (highest power first). */
function polynomial(coefficients: readonly number[], x: number): number {
  return coefficients.reduce((sum, c) => sum * x + c, 0);
}

/**
 * The per-run decision of one batch: which step runs the denoiser and which reuses its last
 * output. Pure bookkeeping (no tensors but the signal), so it can be tested on its own.
 */
export class StepCachePolicy {
  #previous?: Float32Array;
  #reference?: Float32Array;
  #accumulated = 0;
  #inRow = 0;

  constructor(readonly config: CacheConfig, readonly total: number) {}

  /**
   * Whether step `i` needs the signal: every step from the last warm-up step (whose signal the
   * first cacheable step is compared with) to the one before the last (the last is always full).
   */
  wantsSignal(i: number): boolean {
    return this.config.backend !== "none" && i >= this.config.warmup - 1 && i < this.total - 1;
  }

  /**
   * Decides step `i` from its signal (undefined where {@linkcode wantsSignal} said no, or the
   * graph has none): true when the last full output is to be reused. Call it once per step, in
   * order: TeaCache compares consecutive steps.
   */
  reuse(i: number, signal: Float32Array | undefined): boolean {
    const { backend, threshold, warmup, maxCached, coefficients } = this.config;
    let reuse = false;
    if (
      signal && this.#reference && i >= warmup && i < this.total - 1 && this.#inRow < maxCached
    ) {
      if (backend === "tea_cache") {
        const d = relativeL1(signal, this.#previous!);
        this.#accumulated += Math.abs(coefficients ? polynomial(coefficients, d) : d);
        reuse = this.#accumulated < threshold;
      } else {
        reuse = relativeL1(signal, this.#reference) < threshold;
      }
    }
    this.#previous = signal;
    if (reuse) {
      this.#inRow++;
    } else {
      this.#inRow = 0;
      this.#accumulated = 0;
      this.#reference = signal;
    }
    return reuse;
  }
}

/** What {@linkcode StepCache} needs of a pipeline. */
export interface StepCacheHooks<M> {
  /** The scheduler-ready outputs of every active member at step `i` (one denoiser call). */
  predict(active: M[], i: number): Promise<Float32Array[]>;
  /**
   * The signal tensor of `backend` for the batch at step `i`, from the same inputs the denoiser
   * would get; undefined when the graph has none.
   */
  signal?(active: M[], i: number, backend: Exclude<CacheBackend, "none">): Promise<
    Float32Array | undefined
  >;
}

/** A full step's output and the timestep it was computed at. */
export interface FullOutput {
  t: number;
  output: Float32Array;
}

/**
 * TaylorSeer's prediction at timestep `t`: the polynomial through `points` (newest first), one
 * order per point after the first. With two points it is the first-order step
 * out₀ + (out₀ − out₁)·(t − t₀)/(t₀ − t₁); with three, the second-order one (the same polynomial
 * Newton's divided differences give). Written in Lagrange form, so each output is read once. A
 * point whose timestep equals a newer one's is left out (it would divide by zero).
 *
 * The unit is the timestep the denoiser is conditioned on, not the step index (cache-dit's): the
 * output is a smooth function of the input and that timestep, and schedules space timesteps
 * unevenly (flow matching's shift), where equal index steps are unequal moves. For evenly spaced
 * timesteps (the UNet schedules' `leading`/`trailing` spacing) the two are the same.
 */
export function extrapolate(points: readonly FullOutput[], t: number): Float32Array {
  const used = points.filter((p, j) => points.slice(0, j).every((q) => q.t !== p.t));
  const weights = used.map((p, j) =>
    used.reduce((w, q, k) => k === j ? w : w * (t - q.t) / (p.t - q.t), 1)
  );
  const out = new Float32Array(used[0].output.length);
  used.forEach(({ output }, j) => {
    const w = weights[j];
    for (let i = 0; i < out.length; i++) out[i] += w * output[i];
  });
  return out;
}

/**
 * Where TaylorSeer extrapolates for a member: the clean-sample estimate x̂₀ (the scheduler's
 * `predictOriginal`) over the timestep the denoiser is conditioned on. The last full x̂₀ turned
 * back into an output from the current sample is today's reuse for deterministic first-order
 * samplers (Euler, flow matching, DDIM with η = 0), while for ancestral ones it also removes the
 * noise the last step added, which a reused ε̂ leaves in; and the network's raw output is the
 * wrong thing to extrapolate there: the slope between two ε̂ carries that fresh noise.
 */
export interface PredictionSpace<M> {
  /** The member's timestep at step `i`. */
  timestep(member: M, i: number): number;
  /** x̂₀ of the member's output at step `i`, from its current sample. */
  original(member: M, i: number, output: Float32Array): Float32Array;
  /** The output at step `i` whose x̂₀ from the member's current sample is `original`. */
  output(member: M, i: number, original: Float32Array): Float32Array;
}

/** One batch's step cache: the policy, the last full outputs, and what it saved. */
export class StepCache<M extends object> {
  readonly policy: StepCachePolicy;
  /**
   * Each member's last full output (reuse), or its last `taylorseer + 1` full x̂₀, newest
   * first (TaylorSeer).
   */
  readonly #outputs = new WeakMap<M, FullOutput[]>();
  /** Steps that reused outputs; signal sub-graph calls. */
  cachedSteps = 0;
  signalCalls = 0;

  /** `config` undefined: no caching. `space`: what TaylorSeer extrapolates in. */
  constructor(
    config: CacheConfig | undefined,
    total: number,
    readonly space: PredictionSpace<M>,
  ) {
    this.policy = new StepCachePolicy(config ?? NO_CACHE, total);
  }

  /**
   * Step `i`'s outputs: the denoiser's, or for a step the policy caches the last full ones
   * (TaylorSeer: extrapolated from them).
   */
  async predict(
    active: M[],
    i: number,
    hooks: StepCacheHooks<M>,
  ): Promise<{ outputs: Float32Array[]; cached: boolean }> {
    const { backend, taylorseer } = this.policy.config;
    let signal: Float32Array | undefined;
    if (backend !== "none" && this.policy.wantsSignal(i) && hooks.signal) {
      signal = await hooks.signal(active, i, backend);
      if (signal) this.signalCalls++;
    }
    // Members never join a running batch, so each has an output once a full step ran.
    const reuse = this.policy.reuse(i, signal);
    if (reuse) {
      this.cachedSteps++;
      const outputs = active.map((m) => {
        const points = this.#outputs.get(m)!;
        if (!taylorseer) return points[0].output;
        return this.space.output(m, i, extrapolate(points, this.space.timestep(m, i)));
      });
      return { outputs, cached: true };
    }
    const outputs = await hooks.predict(active, i);
    active.forEach((m, k) => {
      if (!taylorseer) return this.#outputs.set(m, [{ t: i, output: outputs[k] }]);
      const point = {
        t: this.space.timestep(m, i),
        output: this.space.original(m, i, outputs[k]),
      };
      this.#outputs.set(m, [point, ...(this.#outputs.get(m) ?? [])].slice(0, taylorseer + 1));
    });
    return { outputs, cached: false };
  }
}
