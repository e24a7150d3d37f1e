/**
 * `DDIMScheduler` (diffusers `scheduling_ddim.py`): deterministic for η = 0, which is what the
 * pipelines use by default.
 *
 * @module
 */
import { randnFrom } from "../random.ts";
import { spacedTimesteps } from "./euler_discrete.ts";
import {
  addNoiseAlpha,
  alphasCumprod,
  checkSteps,
  identityScale,
  linspace,
  modelOutputFor,
  predictOriginal,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerRun,
} from "./scheduler.ts";

/** Denoising diffusion implicit models; `eta` > 0 adds DDPM-like noise. */
export class DDIMScheduler implements Scheduler {
  readonly name = "DDIMScheduler";
  constructor(readonly config: Readonly<SchedulerConfig>, readonly eta = 0) {}

  setTimesteps(numInferenceSteps: number): SchedulerRun {
    checkSteps(numInferenceSteps);
    const config = { timestep_spacing: "leading", ...this.config };
    const T = config.num_train_timesteps ?? 1000;
    // DDIM timesteps are integers; `linspace` spacing rounds them.
    const timesteps = config.timestep_spacing === "linspace"
      ? linspace(0, T - 1, numInferenceSteps).map(Math.round).reverse()
      : spacedTimesteps(config, numInferenceSteps);
    const ac = alphasCumprod(config);
    const finalAlpha = (config.set_alpha_to_one ?? true) ? 1 : ac[0];
    const stride = Math.floor(T / numInferenceSteps);
    const prediction = config.prediction_type ?? "epsilon";
    const clip = config.clip_sample ?? true ? config.clip_sample_range ?? 1 : Infinity;
    const eta = this.eta;
    return {
      timesteps,
      sigmas: [],
      initNoiseSigma: 1,
      scaleModelInput: identityScale,
      predictOriginal: (modelOutput, i, sample) =>
        sample.map((x, k) =>
          Math.min(
            Math.max(predictOriginal(prediction, modelOutput[k], x, ac[timesteps[i]]), -clip),
            clip,
          )
        ),
      modelOutputFor: (original, i, sample) =>
        sample.map((x, k) => modelOutputFor(prediction, original[k], x, ac[timesteps[i]])),
      addNoise: (original, noise, i) => addNoiseAlpha(original, noise, ac[timesteps[i]]),
      step(modelOutput, i, sample, generator) {
        const t = timesteps[i], prevT = t - stride;
        const alpha = ac[t], alphaPrev = prevT >= 0 ? ac[prevT] : finalAlpha;
        const variance = ((1 - alphaPrev) / (1 - alpha)) * (1 - alpha / alphaPrev);
        const std = eta * Math.sqrt(variance);
        const noise = eta > 0 ? randnFrom(generator, [sample.length]) : undefined;
        return sample.map((x, k) => {
          const e = modelOutput[k];
          let x0 = predictOriginal(prediction, e, x, alpha);
          const eps = prediction === "epsilon"
            ? e
            : prediction === "v_prediction"
            ? Math.sqrt(alpha) * e + Math.sqrt(1 - alpha) * x
            : (x - Math.sqrt(alpha) * x0) / Math.sqrt(1 - alpha);
          x0 = Math.min(Math.max(x0, -clip), clip);
          const direction = Math.sqrt(1 - alphaPrev - std * std) * eps;
          return Math.sqrt(alphaPrev) * x0 + direction + (noise ? std * noise[k] : 0);
        });
      },
    };
  }
}
