/**
 * The scheduler contract shared by every algorithm, and the noise-schedule arithmetic they share
 * (diffusers `SchedulerMixin`, `betas_for_alpha_bar`, torch float32 semantics).
 *
 * A {@linkcode Scheduler} is immutable configuration; {@linkcode Scheduler.setTimesteps} returns a
 * fresh {@linkcode SchedulerRun} per request, so concurrent requests never share run state.
 *
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { Mt19937 } from "../random.ts";

/** Keys of diffusers' `scheduler_config.json` that these schedulers read (snake_case as on disk). */
export interface SchedulerConfig {
  _class_name?: string;
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: "linear" | "scaled_linear" | "squaredcos_cap_v2" | string;
  /** Rescale the betas to zero terminal SNR (Lin et al.); needs v-prediction. */
  rescale_betas_zero_snr?: boolean;
  prediction_type?: "epsilon" | "v_prediction" | "sample" | string;
  timestep_spacing?: "linspace" | "leading" | "trailing" | string;
  steps_offset?: number;
  set_alpha_to_one?: boolean;
  clip_sample?: boolean;
  clip_sample_range?: number;
  original_inference_steps?: number;
  timestep_scaling?: number;
  shift?: number;
  use_dynamic_shifting?: boolean;
  base_shift?: number;
  max_shift?: number;
  base_image_seq_len?: number;
  max_image_seq_len?: number;
  shift_terminal?: number | null;
  time_shift_type?: "exponential" | "linear" | string;
  [key: string]: unknown;
}

/** Per-request options of `setTimesteps`. */
export interface SetTimestepsOptions {
  /** Custom sigmas (flow matching: diffusers pipelines pass `linspace(1, 1/N, N)`). */
  sigmas?: readonly number[];
  /** Dynamic-shift exponent for flow matching (`use_dynamic_shifting`). */
  mu?: number;
}

/** One request's denoising schedule and its update rule. */
export interface SchedulerRun {
  /** The timestep value handed to the model at each step (length N). */
  readonly timesteps: readonly number[];
  /** Noise levels (length N+1, ending at the terminal value) where the algorithm has them. */
  readonly sigmas: readonly number[];
  /** Multiplier for the initial Gaussian latents. */
  readonly initNoiseSigma: number;
  /** `scale_model_input`: what the model sees at step `i`. */
  scaleModelInput(sample: Float32Array, i: number): Float32Array;
  /**
   * The clean-sample estimate x̂₀ at step `i` (what a preview shows): `x − σ·ε̂` for Euler with
   * ε-prediction, `x − σ·v` for flow matching, `(x − √(1−ᾱ)·ε̂)/√ᾱ` for DDPM-parameterised ones.
   */
  predictOriginal(modelOutput: Float32Array, i: number, sample: Float32Array): Float32Array;
  /**
   * The inverse of {@linkcode predictOriginal} (clipping aside): the model output whose x̂₀ at
   * step `i` from `sample` is `original`. A step cache uses it to hand the scheduler an x̂₀ it
   * predicted without the model (./../pipelines/step_cache.ts).
   */
  modelOutputFor(original: Float32Array, i: number, sample: Float32Array): Float32Array;
  /** One update `x_i → x_{i+1}`; stochastic algorithms draw their noise from `generator`. */
  step(
    modelOutput: Float32Array,
    i: number,
    sample: Float32Array,
    generator: Mt19937,
  ): Float32Array;
  /**
   * A clean sample noised to step `i`'s level, where the run would be at step `i` (diffusers
   * `add_noise` at `timesteps[i]`: `x + σ·ε` for Euler, `√ᾱ·x + √(1−ᾱ)·ε` for DDIM and LCM;
   * flow matching's `scale_noise`: `σ·ε + (1−σ)·x`). Image-to-image starts here; inpainting
   * re-noises the kept region with it after each step.
   */
  addNoise(original: Float32Array, noise: Float32Array, i: number): Float32Array;
}

/**
 * The tail of `run` from step `begin` on (diffusers `timesteps[t_start:]` with
 * `set_begin_index(t_start)`): step `i` here is step `begin + i` of `run`.
 */
export function startAt(run: SchedulerRun, begin: number): SchedulerRun {
  if (begin === 0) return run;
  return {
    timesteps: run.timesteps.slice(begin),
    sigmas: run.sigmas.slice(begin),
    initNoiseSigma: run.initNoiseSigma,
    scaleModelInput: (sample, i) => run.scaleModelInput(sample, begin + i),
    predictOriginal: (output, i, sample) => run.predictOriginal(output, begin + i, sample),
    modelOutputFor: (original, i, sample) => run.modelOutputFor(original, begin + i, sample),
    step: (output, i, sample, generator) => run.step(output, begin + i, sample, generator),
    addNoise: (original, noise, i) => run.addNoise(original, noise, begin + i),
  };
}

/** `√ᾱ_t·x + √(1−ᾱ_t)·ε` in torch's float32 (diffusers' DDPM-family `add_noise`). */
export function addNoiseAlpha(
  original: Float32Array,
  noise: Float32Array,
  alphaProd: number,
): Float32Array {
  const a = f32(Math.sqrt(alphaProd)), b = f32(Math.sqrt(f32(1 - alphaProd)));
  return original.map((x, k) => f32(a * x) + f32(b * noise[k]));
}

/** A denoising algorithm, configured once per loaded model. */
export interface Scheduler {
  /** diffusers class name, e.g. `EulerDiscreteScheduler`. */
  readonly name: string;
  readonly config: Readonly<SchedulerConfig>;
  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): SchedulerRun;
}

const f32 = Math.fround;

/** `torch.linspace(start, end, steps, dtype=float32)`, including its two-sided evaluation. */
export function linspaceFloat32(start: number, end: number, steps: number): number[] {
  if (steps === 1) return [f32(start)];
  const s = f32(start), e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from(
    { length: steps },
    (_, i) => i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1))),
  );
}

/** `numpy.linspace(start, end, num)` in float64. */
export function linspace(start: number, end: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (end - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => i === num - 1 ? end : start + i * step);
}

/** `numpy.interp` for increasing integer abscissae 0..n-1. */
export function interpIndex(x: number, ys: readonly number[]): number {
  if (x <= 0) return ys[0];
  if (x >= ys.length - 1) return ys[ys.length - 1];
  const i = Math.floor(x);
  return ys[i] + (ys[i + 1] - ys[i]) * (x - i);
}

/** `alphas_cumprod` of the DDPM-family schedules, with torch's float32 storage. */
export function alphasCumprod(config: SchedulerConfig): Float32Array {
  const T = config.num_train_timesteps ?? 1000;
  const start = config.beta_start ?? 0.0001, end = config.beta_end ?? 0.02;
  const schedule = config.beta_schedule ?? "linear";
  let betas: number[];
  if (schedule === "linear") {
    betas = linspaceFloat32(start, end, T);
  } else if (schedule === "scaled_linear") {
    betas = linspaceFloat32(Math.sqrt(start), Math.sqrt(end), T).map((b) => f32(b * b));
  } else if (schedule === "squaredcos_cap_v2") {
    const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    betas = Array.from(
      { length: T },
      (_, i) => f32(Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999)),
    );
  } else {
    throw new RangeError(
      `Unsupported beta_schedule '${schedule}' (expected linear, scaled_linear or squaredcos_cap_v2)`,
    );
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return cumprod(betas.map((b) => f32(1 - b)));
}

/** torch.cumprod on CPU: accumulates float32 in double and stores float32. */
function cumprod(xs: readonly number[]): Float32Array {
  const out = new Float32Array(xs.length);
  let acc = 1;
  for (let i = 0; i < xs.length; i++) {
    acc *= xs[i];
    out[i] = acc;
  }
  return out;
}

/**
 * diffusers `rescale_zero_terminal_snr` (Lin et al. 2024, "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed", algorithm 1), in float32 as torch runs it: √ᾱ is shifted so that its
 * last value is 0 and scaled so that its first is unchanged, and the betas are recovered from it.
 */
function rescaleZeroTerminalSnr(betas: readonly number[]): number[] {
  const sqrtAc = Array.from(cumprod(betas.map((b) => f32(1 - b))), (a) => f32(Math.sqrt(a)));
  const first = sqrtAc[0], last = sqrtAc[sqrtAc.length - 1];
  const scale = f32(first / f32(first - last));
  const ac = sqrtAc.map((s) => f32(f32(f32(s - last) * scale) ** 2));
  return ac.map((a, i) => f32(1 - (i === 0 ? a : f32(a / ac[i - 1]))));
}

/** The error for a `prediction_type` none of the schedulers knows. */
export function unsupportedPrediction(predictionType: string): never {
  throw new RangeError(
    `Unsupported prediction_type '${predictionType}' (expected epsilon, v_prediction or sample)`,
  );
}

/** The model output of a DDPM-parameterised model whose x̂₀ is `original`. */
export function modelOutputFor(
  predictionType: string,
  original: number,
  sample: number,
  alphaProd: number,
): number {
  const betaProd = 1 - alphaProd;
  switch (predictionType) {
    case "epsilon":
      return (sample - Math.sqrt(alphaProd) * original) / Math.sqrt(betaProd);
    case "v_prediction":
      return (Math.sqrt(alphaProd) * sample - original) / Math.sqrt(betaProd);
    case "sample":
      return original;
  }
  return unsupportedPrediction(predictionType);
}

/** The clean-sample estimate x̂₀ of a DDPM-parameterised model output. */
export function predictOriginal(
  predictionType: string,
  modelOutput: number,
  sample: number,
  alphaProd: number,
): number {
  const betaProd = 1 - alphaProd;
  switch (predictionType) {
    case "epsilon":
      return (sample - Math.sqrt(betaProd) * modelOutput) / Math.sqrt(alphaProd);
    case "v_prediction":
      return Math.sqrt(alphaProd) * sample - Math.sqrt(betaProd) * modelOutput;
    case "sample":
      return modelOutput;
  }
  return unsupportedPrediction(predictionType);
}

/** Throws unless `n` is a whole number of steps ≥ 1. */
export function checkSteps(n: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidInputError(`num_inference_steps must be an integer >= 1, got ${n}`);
  }
}

/** Identity `scale_model_input` for schedulers whose model input is the sample itself. */
export const identityScale = (sample: Float32Array): Float32Array => sample;
