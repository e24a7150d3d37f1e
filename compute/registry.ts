/**
 * Known model ids → family, per-model defaults (filling absent request parameters) and the pixel
 * limit, gathered from the families' descriptors (`compute/families/`). Unknown folders are
 * recognised from `model_index.json` `_class_name`.
 *
 * @module
 */
import { FAMILIES } from "./families/mod.ts";
import type { KnownModel } from "./families/family.ts";

/** What the server knows about a model id. */
export interface ModelCard extends KnownModel {
  /** diffusers pipeline class: its family's first. */
  family: string;
}

/** Models whose recommended settings are known (vLLM-Omni docs, model cards), by family. */
export const MODEL_REGISTRY: readonly ModelCard[] = FAMILIES.flatMap((f) =>
  f.models.map((model) => ({ ...model, family: f.pipelineClasses[0] }))
);

/** The card of a known id (case-insensitive), if any. */
export function findModelCard(id: string): ModelCard | undefined {
  const lower = id.toLowerCase();
  return MODEL_REGISTRY.find((card) => card.id.toLowerCase() === lower);
}
