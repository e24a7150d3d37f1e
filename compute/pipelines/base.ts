/**
 * {@linkcode PipelineBase}: what every family's pipeline does alike, so that each keeps only its
 * numbered steps (`generateBatch`).
 *
 * @module
 */
import { only } from "./denoising_loop.ts";
import type { BatchOutcome, GenerateOptions, GenerateResult } from "./pipeline.ts";

/** Something a pipeline holds open: a session, a text conditioning, the step cache's graphs. */
export interface Releasable {
  release(): Promise<void>;
}

/** `generate` as a batch of one, and `release` of what the pipeline holds, in order. */
export abstract class PipelineBase {
  /** Runs requests of one batch key together (the family's numbered steps). */
  abstract generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]>;

  /** What {@linkcode release} frees, in this order; absent parts are skipped. */
  protected abstract held(): readonly (Releasable | undefined)[];

  /** Runs one request; throws what the request failed with. */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    return this.generateBatch([options]).then(only);
  }

  async release(): Promise<void> {
    for (const part of this.held()) await part?.release();
  }
}
