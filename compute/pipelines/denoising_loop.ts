/**
 * The part every pipeline shares: a batch of requests, each with its own seed, generator,
 * schedule, latents and cancel signal, denoised together step by step. Pipelines supply what
 * differs (how the model is called, how latents become pixels); this module owns cancellation,
 * per-step timing, `onStep` and previews.
 *
 * @module
 */
import { CancelledError } from "../errors.ts";
import { Mt19937 } from "../random.ts";
import type { SchedulerRun } from "../schedulers/scheduler.ts";
import { randomSeed } from "./common.ts";
import type { BatchOutcome, GenerateOptions, GenerateResult, RgbImage } from "./pipeline.ts";
import { StepCache, type StepCacheHooks } from "./step_cache.ts";

/** The per-request values a run uses, after defaults. */
export interface RunParams {
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  n: number;
  seed: bigint;
  scheduler: string;
}

/** One request inside a batch. `Text` is the pipeline's encoded prompt. */
export interface Member<Text = unknown> {
  readonly options: GenerateOptions;
  readonly params: RunParams;
  readonly generator: Mt19937;
  readonly run: SchedulerRun;
  /** `n` images' latents, image-major. */
  latents: Float32Array;
  text?: Text;
  images?: RgbImage[];
  /** Set when the request failed or was cancelled; it then leaves the batch. */
  error?: Error;
  readonly started: number;
  readonly timings: {
    tokenizeMs: number;
    textEncodeMs: number;
    stepMs: number[];
    decodeMs: number;
    cachedSteps: number;
  };
  /** Step index → preview index. */
  readonly previewAt: ReadonlyMap<number, number>;
  /** What the request does to its latents after each scheduler step (inpainting's blending). */
  readonly afterStep?: (latents: Float32Array, i: number) => Float32Array;
  /** What a preview shows of an x̂₀ (inpainting: the kept region as the image's own latents). */
  readonly previewLatents?: (x0: Float32Array) => Float32Array;
}

/** What a pipeline decides for one request before anything runs. */
export interface MemberSetup {
  params: Omit<RunParams, "seed">;
  run: SchedulerRun;
  /**
   * Draws the initial latents from the request's generator (diffusers `prepare_latents`); an
   * edit encodes its image here first, since diffusers draws the encoder's sample before the noise.
   */
  initialLatents(generator: Mt19937): Float32Array | Promise<Float32Array>;
  /** Set by edits that blend after each step: what {@linkcode Member.afterStep} does. */
  afterStep?: (latents: Float32Array, i: number) => Float32Array;
  /** Set by edits that blend: what {@linkcode Member.previewLatents} does. */
  previewLatents?: (x0: Float32Array) => Float32Array;
}

/**
 * Makes the batch's members, one after another (an edit's image encoding runs here). A request
 * whose setup throws (out-of-range values, an unusable image) or is cancelled fails alone.
 */
export async function createMembers<Text>(
  batch: readonly GenerateOptions[],
  setup: (options: GenerateOptions) => MemberSetup,
): Promise<Member<Text>[]> {
  const members: Member<Text>[] = [];
  for (const options of batch) {
    const started = performance.now();
    const timings = { tokenizeMs: 0, textEncodeMs: 0, stepMs: [], decodeMs: 0, cachedSteps: 0 };
    const seed = options.seed === undefined ? randomSeed() : BigInt(options.seed);
    const generator = new Mt19937(seed);
    try {
      if (options.signal?.aborted) throw new CancelledError("Generation cancelled");
      const s = setup(options);
      // Before reading `afterStep`: an edit sets it once its image is encoded.
      const latents = await s.initialLatents(generator);
      members.push({
        options,
        params: { ...s.params, seed },
        generator,
        run: s.run,
        latents,
        started,
        timings,
        previewAt: previewSteps(s.run.timesteps.length, options.previews ?? 0),
        afterStep: s.afterStep,
        previewLatents: s.previewLatents,
      });
    } catch (error) {
      const params = {
        width: 0,
        height: 0,
        steps: 0,
        guidanceScale: 0,
        n: 0,
        seed,
        scheduler: "",
      };
      members.push({
        options,
        params,
        generator,
        run: undefined as unknown as SchedulerRun,
        latents: new Float32Array(),
        started,
        timings,
        previewAt: new Map(),
        error: error as Error,
      });
    }
  }
  return members;
}

/** Whether a member still runs: its signal is read here, and a cancelled member fails. */
function isLive(m: Member): boolean {
  if (!m.error && m.options.signal?.aborted) m.error = new CancelledError("Generation cancelled");
  return !m.error;
}

/**
 * The members still running: each one's signal is checked here, so cancelling takes effect at
 * the next stage or step.
 */
export function live<M extends Member>(members: readonly M[]): M[] {
  return members.filter(isLive);
}

/**
 * Runs `stage` for each live member, timing it into `timings[key]`; a throw fails that member.
 * Each member's signal is read just before its own stage, not once for all: a request cancelled
 * while a batch-mate's decode ran does not start its own.
 */
export async function eachLive<M extends Member>(
  members: readonly M[],
  key: "textEncodeMs" | "decodeMs",
  stage: (member: M) => Promise<void>,
): Promise<void> {
  for (const m of members) {
    if (!isLive(m)) continue;
    const t = performance.now();
    try {
      await stage(m);
    } catch (error) {
      m.error = error as Error;
    }
    m.timings[key] += performance.now() - t;
  }
}

/**
 * Hooks of {@linkcode denoise}. `predict` gives the scheduler-ready model output (guidance
 * applied) of every active member at step `i`, in the members' order, from as few network calls
 * as the pipeline can manage; `signal`, where the pipeline has one, lets steps be cached (the
 * batch's `options.cache`, ./step_cache.ts).
 */
export interface DenoiseHooks<M extends Member> extends StepCacheHooks<M> {
  /** x̂₀ of a member's `n` images → preview pixels. */
  preview(member: M, x0: Float32Array): Promise<RgbImage[]>;
}

/**
 * The denoising loop: per step, drop cancelled members, predict for the rest in one go, take a
 * scheduler step per member with its own generator, report the step and any due preview.
 */
export async function denoise<M extends Member>(
  members: readonly M[],
  hooks: DenoiseHooks<M>,
): Promise<void> {
  const steps = Math.max(0, ...live(members).map((m) => m.run.timesteps.length));
  // A batch runs with its first member's cache settings (the server batches only equal ones).
  const cache = new StepCache<M>(members[0]?.options.cache, steps, {
    timestep: (m, i) => m.run.timesteps[i],
    // Called before the step, so m.latents is the sample the output belongs to.
    original: (m, i, output) => m.run.predictOriginal(output, i, m.latents),
    output: (m, i, x0) => m.run.modelOutputFor(x0, i, m.latents),
  });
  for (let i = 0; i < steps; i++) {
    const active = live(members);
    if (active.length === 0) return;
    const started = performance.now();
    let outputs: Float32Array[], cached: boolean;
    try {
      ({ outputs, cached } = await cache.predict(active, i, hooks));
    } catch (error) {
      for (const m of active) m.error = error as Error;
      return;
    }
    const due: [M, Float32Array][] = [];
    active.forEach((m, k) => {
      if (m.previewAt.has(i)) {
        const x0 = m.run.predictOriginal(outputs[k], i, m.latents);
        due.push([m, m.previewLatents ? m.previewLatents(x0) : x0]);
      }
      m.latents = m.run.step(outputs[k], i, m.latents, m.generator);
      if (m.afterStep) m.latents = m.afterStep(m.latents, i);
    });
    const ms = performance.now() - started;
    for (const m of active) {
      m.timings.stepMs.push(ms);
      if (cached) m.timings.cachedSteps++;
      m.options.onStep?.({ step: i, total: steps, timestep: m.run.timesteps[i], ms, cached });
    }
    for (const [m, x0] of due) {
      // A preview that decodes can be cancelled (or fail) like the final decode: that member alone.
      try {
        const images = await hooks.preview(m, x0);
        m.options.onPreview?.({ index: m.previewAt.get(i)!, step: i, images });
      } catch (error) {
        m.error = error as Error;
      }
    }
  }
}

/** Each member's result or error, in batch order. */
export function outcomes(members: readonly Member[]): BatchOutcome[] {
  return members.map((m): BatchOutcome => {
    if (m.error) return { ok: false, error: m.error };
    const result: GenerateResult = {
      images: m.images!,
      seed: m.params.seed,
      width: m.params.width,
      height: m.params.height,
      steps: m.params.steps,
      guidanceScale: m.params.guidanceScale,
      scheduler: m.params.scheduler,
      timings: { ...m.timings, totalMs: performance.now() - m.started },
    };
    return { ok: true, result };
  });
}

/** The single outcome of a batch of one, as a result or a throw. */
export function only(outcomes: BatchOutcome[]): GenerateResult {
  const [o] = outcomes;
  if (!o.ok) throw o.error;
  return o.result;
}

/**
 * Steps at which previews are taken: `count` of them spread evenly, never on the last step (the
 * final image follows it) and never twice on one step.
 */
export function previewSteps(total: number, count: number): Map<number, number> {
  const at = new Map<number, number>();
  for (let j = 0; j < count; j++) {
    const step = Math.round(((j + 1) * total) / (count + 1)) - 1;
    if (step >= 0 && step < total - 1 && !at.has(step)) at.set(step, at.size);
  }
  return at;
}
