/**
 * `EulerAncestralDiscreteScheduler` (diffusers `scheduling_euler_ancestral_discrete.py`): an Euler
 * step to σ_down plus fresh noise of size σ_up, drawn from the request's generator.
 *
 * @module
 */
import { randnFrom } from "../random.ts";
import { eulerPredictOriginal, eulerSchedule } from "./euler_discrete.ts";
import type { Scheduler, SchedulerConfig, SchedulerRun } from "./scheduler.ts";

/** Ancestral sampling with Euler steps. */
export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly name = "EulerAncestralDiscreteScheduler";
  constructor(readonly config: Readonly<SchedulerConfig>) {}

  setTimesteps(numInferenceSteps: number): SchedulerRun {
    const schedule = eulerSchedule(this.config, numInferenceSteps);
    const { sigmas, prediction } = schedule;
    return {
      ...schedule,
      step(modelOutput, i, sample, generator) {
        const from = sigmas[i], to = sigmas[i + 1];
        const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
        const down = Math.sqrt(to * to - up * up);
        const noise = randnFrom(generator, [sample.length]);
        return sample.map((x, k) => {
          const x0 = eulerPredictOriginal(prediction, modelOutput[k], x, from);
          return x + ((x - x0) / from) * (down - from) + noise[k] * up;
        });
      },
    };
  }
}
