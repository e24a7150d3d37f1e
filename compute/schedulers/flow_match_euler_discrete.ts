/**
 * `FlowMatchEulerDiscreteScheduler` (diffusers `scheduling_flow_match_euler_discrete.py`): Euler
 * steps on a rectified-flow velocity, with static or dynamic (resolution-dependent) time shift and
 * an optional terminal stretch. Used by Qwen-Image and Z-Image.
 *
 * @module
 */
import {
  checkSteps,
  identityScale,
  linspace,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerRun,
  type SetTimestepsOptions,
} from "./scheduler.ts";

const f32 = Math.fround;

/** `mu` for dynamic shifting: linear in the image token count (diffusers `calculate_shift`). */
export function calculateShift(imageSeqLen: number, config: SchedulerConfig): number {
  const baseLen = config.base_image_seq_len ?? 256, maxLen = config.max_image_seq_len ?? 4096;
  const baseShift = config.base_shift ?? 0.5, maxShift = config.max_shift ?? 1.15;
  const m = (maxShift - baseShift) / (maxLen - baseLen);
  return imageSeqLen * m + (baseShift - m * baseLen);
}

/** Rectified-flow Euler sampler. */
export class FlowMatchEulerDiscreteScheduler implements Scheduler {
  readonly name = "FlowMatchEulerDiscreteScheduler";
  constructor(readonly config: Readonly<SchedulerConfig>) {}

  #shift(sigma: number): number {
    const shift = this.config.shift ?? 1;
    return (shift * sigma) / (1 + (shift - 1) * sigma);
  }

  setTimesteps(numInferenceSteps: number, options: SetTimestepsOptions = {}): SchedulerRun {
    checkSteps(numInferenceSteps);
    const T = this.config.num_train_timesteps ?? 1000;
    const dynamic = this.config.use_dynamic_shifting ?? false;
    let sigmas: number[];
    if (options.sigmas) {
      if (options.sigmas.length !== numInferenceSteps) {
        throw new RangeError(
          `Expected ${numInferenceSteps} sigmas, got ${options.sigmas.length}`,
        );
      }
      sigmas = options.sigmas.map(f32);
    } else {
      // __init__ builds σ = linspace(1, T, T)/T (shifted when static); set_timesteps spaces
      // timesteps linearly between σ_max·T and σ_min·T.
      const sigmaMax = dynamic ? 1 : this.#shift(1);
      const sigmaMin = dynamic ? f32(1 / T) : this.#shift(f32(1 / T));
      sigmas = linspace(sigmaMax * T, sigmaMin * T, numInferenceSteps).map((t) => t / T);
    }
    if (dynamic) {
      const mu = options.mu;
      if (mu === undefined) {
        throw new TypeError("FlowMatchEulerDiscreteScheduler with use_dynamic_shifting needs mu");
      }
      // diffusers shifts its float32 sigma array with Python-float μ: every step in float32.
      const m = f32(this.config.time_shift_type === "linear" ? mu : Math.exp(mu));
      sigmas = sigmas.map((s) => f32(m / f32(m + f32(f32(1 / s) - 1))));
    } else {
      sigmas = sigmas.map((s) => this.#shift(s));
    }
    const terminal = this.config.shift_terminal;
    const last = sigmas[sigmas.length - 1];
    // diffusers' stretch divides by 1 − σ_last: one step (σ = [1]) makes every sigma 0/0 = NaN
    // there, and the image black; with nothing to stretch, the sigmas stay as they are.
    if (terminal && last !== 1) {
      // In float32 on the float32 array, as numpy runs it; the scale factor is a float64 scalar.
      const scale = f32(f32(1 - last) / (1 - terminal));
      sigmas = sigmas.map((s) => f32(1 - f32(f32(1 - s) / scale)));
    }
    sigmas = sigmas.map(f32);
    const timesteps = sigmas.map((s) => f32(s * T));
    const all = [...sigmas, 0];
    return {
      timesteps,
      sigmas: all,
      initNoiseSigma: 1,
      scaleModelInput: identityScale,
      predictOriginal: (modelOutput, i, sample) =>
        sample.map((x, k) => x - all[i] * modelOutput[k]),
      modelOutputFor: (original, i, sample) => sample.map((x, k) => (x - original[k]) / all[i]),
      // scale_noise: σ·ε + (1 − σ)·x, in float32 as torch evaluates it.
      addNoise: (original, noise, i) => {
        const sigma = all[i], keep = f32(1 - sigma);
        return original.map((x, k) => f32(sigma * noise[k]) + f32(keep * x));
      },
      step(modelOutput, i, sample) {
        const dt = all[i + 1] - all[i];
        return sample.map((x, k) => x + dt * modelOutput[k]);
      },
    };
  }
}
