/**
 * The model families the server loads and the converter converts: adding a family is adding its
 * folder and one line here.
 *
 * @module
 */
import type { Family } from "./family.ts";
import { QWEN_IMAGE } from "./qwen_image/mod.ts";
import { STABLE_DIFFUSION } from "./stable_diffusion/mod.ts";
import { STABLE_DIFFUSION_XL } from "./stable_diffusion_xl/mod.ts";
import { Z_IMAGE } from "./z_image/mod.ts";

export type { Family } from "./family.ts";

/** Every family, in the order their class names are listed to users. */
export const FAMILIES: readonly Family[] = [
  STABLE_DIFFUSION,
  STABLE_DIFFUSION_XL,
  QWEN_IMAGE,
  Z_IMAGE,
];

/** The family serving the `model_index.json` `_class_name` `cls`, if any. */
export function familyOf(cls: string): Family | undefined {
  return FAMILIES.find((f) => f.pipelineClasses.includes(cls));
}

/** The family `deno task convert` converts a diffusers folder of `cls` with, if any. */
export function convertedFamilyOf(cls: string): Family | undefined {
  return FAMILIES.find((f) => f.convert.pipelineClasses.includes(cls));
}
