/**
 * `EulerDiscreteScheduler` (diffusers `scheduling_euler_discrete.py`, γ = 0) and the sigma
 * schedule it shares with `EulerAncestralDiscreteScheduler`.
 *
 * @module
 */
import {
  alphasCumprod,
  checkSteps,
  interpIndex,
  linspace,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerRun,
  unsupportedPrediction,
} from "./scheduler.ts";

const f32 = Math.fround;

/** Timesteps (float, as the scheduler stores them) for a DDPM-family spacing. */
export function spacedTimesteps(config: SchedulerConfig, n: number): number[] {
  const T = config.num_train_timesteps ?? 1000;
  const spacing = config.timestep_spacing ?? "linspace";
  const offset = config.steps_offset ?? 0;
  if (spacing === "linspace") return linspace(0, T - 1, n).reverse().map(f32);
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, i) => Math.round(i * ratio) + offset).reverse();
  }
  if (spacing === "trailing") {
    const ratio = T / n;
    // np.arange(T, 0, -ratio).round() - 1
    const out: number[] = [];
    for (let t = T; t > 0 && out.length < n; t -= ratio) out.push(roundHalfEven(t) - 1);
    return out;
  }
  throw new RangeError(
    `Unsupported timestep_spacing '${spacing}' (expected linspace, leading or trailing)`,
  );
}

/** numpy's round (half to even). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Karras-free Euler sigmas: `interp(t, arange(T), √((1−ᾱ)/ᾱ))` then a terminal 0. At zero
 * terminal SNR the last ᾱ is 0 (σ infinite) and, as in diffusers, is replaced by 2⁻²⁴ (σ ≈ 4096).
 */
export function eulerSigmas(config: SchedulerConfig, timesteps: readonly number[]): number[] {
  const ac = alphasCumprod(config);
  if (config.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
  const table = Array.from(ac, (a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
  return [...timesteps.map((t) => f32(interpIndex(t, table))), 0];
}

/** `init_noise_sigma`: σ_max, or √(σ_max²+1) for `leading` spacing. */
export function eulerInitNoiseSigma(config: SchedulerConfig, sigmas: readonly number[]): number {
  const max = Math.max(...sigmas);
  const spacing = config.timestep_spacing ?? "linspace";
  return spacing === "linspace" || spacing === "trailing" ? max : Math.sqrt(max * max + 1);
}

/** The Karras-style (σ-parameterised) model output whose x̂₀ is `original`. */
export function eulerModelOutputFor(
  predictionType: string,
  original: number,
  sample: number,
  sigma: number,
): number {
  switch (predictionType) {
    case "epsilon":
      return (sample - original) / sigma;
    case "v_prediction":
      return (sample / (sigma * sigma + 1) - original) * Math.sqrt(sigma * sigma + 1) / sigma;
    case "sample":
      return original;
  }
  return unsupportedPrediction(predictionType);
}

/** x̂₀ from a Karras-style (σ-parameterised) model output. */
export function eulerPredictOriginal(
  predictionType: string,
  modelOutput: number,
  sample: number,
  sigma: number,
): number {
  switch (predictionType) {
    case "epsilon":
      return sample - sigma * modelOutput;
    case "v_prediction":
      return modelOutput * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
    case "sample":
      return modelOutput;
  }
  return unsupportedPrediction(predictionType);
}

/** `x / √(σ²+1)`, the Euler family's `scale_model_input`. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const k = Math.sqrt(sigma * sigma + 1);
  return sample.map((x) => x / k);
}

/** The σ-parameterised schedule shared by Euler and Euler ancestral. */
export function eulerSchedule(config: SchedulerConfig, numInferenceSteps: number) {
  checkSteps(numInferenceSteps);
  const timesteps = spacedTimesteps(config, numInferenceSteps);
  const sigmas = eulerSigmas(config, timesteps);
  const prediction = config.prediction_type ?? "epsilon";
  return {
    timesteps,
    sigmas,
    initNoiseSigma: eulerInitNoiseSigma(config, sigmas),
    prediction,
    scaleModelInput: (sample: Float32Array, i: number) => scaleBySigma(sample, sigmas[i]),
    predictOriginal: (modelOutput: Float32Array, i: number, sample: Float32Array) =>
      sample.map((x, k) => eulerPredictOriginal(prediction, modelOutput[k], x, sigmas[i])),
    modelOutputFor: (original: Float32Array, i: number, sample: Float32Array) =>
      sample.map((x, k) => eulerModelOutputFor(prediction, original[k], x, sigmas[i])),
    addNoise: (original: Float32Array, noise: Float32Array, i: number) =>
      original.map((x, k) => x + f32(noise[k] * sigmas[i])),
  };
}

/** Euler's method on the probability-flow ODE. */
export class EulerDiscreteScheduler implements Scheduler {
  readonly name = "EulerDiscreteScheduler";
  constructor(readonly config: Readonly<SchedulerConfig>) {}

  setTimesteps(numInferenceSteps: number): SchedulerRun {
    const schedule = eulerSchedule(this.config, numInferenceSteps);
    const { sigmas, prediction } = schedule;
    return {
      ...schedule,
      step(modelOutput, i, sample) {
        const sigma = sigmas[i], dt = sigmas[i + 1] - sigma;
        return sample.map((x, k) => {
          const x0 = eulerPredictOriginal(prediction, modelOutput[k], x, sigma);
          return x + ((x - x0) / sigma) * dt;
        });
      },
    };
  }
}
