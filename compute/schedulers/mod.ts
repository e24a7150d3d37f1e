/**
 * Schedulers as small, swappable objects configured from `scheduler/scheduler_config.json`.
 *
 * ```ts
 * import { createScheduler } from "./mod.ts";
 * const scheduler = createScheduler({ _class_name: "EulerDiscreteScheduler", timestep_spacing: "trailing" });
 * const run = scheduler.setTimesteps(4); // run.timesteps == [999, 749, 499, 249]
 * ```
 *
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { DDIMScheduler } from "./ddim.ts";
import { EulerAncestralDiscreteScheduler } from "./euler_ancestral_discrete.ts";
import { EulerDiscreteScheduler } from "./euler_discrete.ts";
import { FlowMatchEulerDiscreteScheduler } from "./flow_match_euler_discrete.ts";
import { LCMScheduler } from "./lcm.ts";
import type { Scheduler, SchedulerConfig } from "./scheduler.ts";

export type { Scheduler, SchedulerConfig, SchedulerRun, SetTimestepsOptions } from "./scheduler.ts";
export { calculateShift } from "./flow_match_euler_discrete.ts";
export {
  DDIMScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  FlowMatchEulerDiscreteScheduler,
  LCMScheduler,
};

/** Short names accepted wherever a scheduler can be chosen per request. */
export const SCHEDULER_NAMES = {
  euler: "EulerDiscreteScheduler",
  euler_a: "EulerAncestralDiscreteScheduler",
  ddim: "DDIMScheduler",
  lcm: "LCMScheduler",
  flow_match_euler: "FlowMatchEulerDiscreteScheduler",
} as const;

/** A short scheduler name. */
export type SchedulerName = keyof typeof SCHEDULER_NAMES;

const CLASSES: Record<string, new (config: SchedulerConfig) => Scheduler> = {
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DDIMScheduler,
  LCMScheduler,
  FlowMatchEulerDiscreteScheduler,
};

/**
 * Builds the scheduler a model's config names, or `override` (a short name) with the same
 * noise-schedule settings. diffusers' `from_config` swap works the same way.
 */
export function createScheduler(config: SchedulerConfig, override?: SchedulerName): Scheduler {
  const className = override ? SCHEDULER_NAMES[override] : config._class_name;
  const Class = className ? CLASSES[className] : undefined;
  if (!Class) {
    throw new InvalidInputError(
      `Unsupported scheduler '${className ?? override}' (supported: ${
        Object.keys(CLASSES).join(", ")
      })`,
    );
  }
  return new Class(config);
}
