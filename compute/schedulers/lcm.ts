/**
 * `LCMScheduler` (diffusers `scheduling_lcm.py`): latent consistency models, with the
 * boundary-condition scalings c_skip / c_out and fresh noise between steps.
 *
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { randnFrom } from "../random.ts";
import {
  addNoiseAlpha,
  alphasCumprod,
  checkSteps,
  identityScale,
  modelOutputFor,
  predictOriginal,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerRun,
} from "./scheduler.ts";

const SIGMA_DATA = 0.5;

/** Multistep consistency sampling. */
export class LCMScheduler implements Scheduler {
  readonly name = "LCMScheduler";
  constructor(readonly config: Readonly<SchedulerConfig>) {}

  setTimesteps(numInferenceSteps: number): SchedulerRun {
    checkSteps(numInferenceSteps);
    const T = this.config.num_train_timesteps ?? 1000;
    const originalSteps = this.config.original_inference_steps ?? 50;
    if (numInferenceSteps > originalSteps) {
      throw new InvalidInputError(
        `LCMScheduler supports at most original_inference_steps=${originalSteps} steps, got ${numInferenceSteps}`,
      );
    }
    const k = Math.floor(T / originalSteps);
    const origin = Array.from({ length: originalSteps }, (_, i) => (i + 1) * k - 1).reverse();
    const timesteps = Array.from(
      { length: numInferenceSteps },
      (_, i) => origin[Math.floor((i * originalSteps) / numInferenceSteps)],
    );
    const ac = alphasCumprod(this.config);
    const finalAlpha = (this.config.set_alpha_to_one ?? true) ? 1 : ac[0];
    const scaling = this.config.timestep_scaling ?? 10;
    const prediction = this.config.prediction_type ?? "epsilon";
    return {
      timesteps,
      sigmas: [],
      initNoiseSigma: 1,
      scaleModelInput: identityScale,
      predictOriginal: (modelOutput, i, sample) =>
        sample.map((x, k) => predictOriginal(prediction, modelOutput[k], x, ac[timesteps[i]])),
      modelOutputFor: (original, i, sample) =>
        sample.map((x, k) => modelOutputFor(prediction, original[k], x, ac[timesteps[i]])),
      addNoise: (original, noise, i) => addNoiseAlpha(original, noise, ac[timesteps[i]]),
      step(modelOutput, i, sample, generator) {
        const t = timesteps[i];
        const last = i === timesteps.length - 1;
        const prevT = last ? t : timesteps[i + 1];
        const alpha = ac[t], alphaPrev = prevT >= 0 ? ac[prevT] : finalAlpha;
        const st = t * scaling;
        const cSkip = SIGMA_DATA ** 2 / (st * st + SIGMA_DATA ** 2);
        const cOut = st / Math.sqrt(st * st + SIGMA_DATA ** 2);
        const denoised = sample.map((x, j) =>
          cOut * predictOriginal(prediction, modelOutput[j], x, alpha) + cSkip * x
        );
        if (last) return denoised;
        const noise = randnFrom(generator, [sample.length]);
        return denoised.map((d, j) =>
          Math.sqrt(alphaPrev) * d + Math.sqrt(1 - alphaPrev) * noise[j]
        );
      },
    };
  }
}
