/**
 * How a model's graphs run, for every family alike (the folder's {@linkcode Prepare}): the
 * denoiser's rows per call and sessions (`--cfg-mode`, `--cfg-parallel-size`:
 * ../pipelines/row_calls.ts) and whether the text encoders are closed while the denoiser runs
 * (`--enable-cpu-offload`).
 *
 * @module
 */
import { type CfgMode, rowCalls } from "../pipelines/row_calls.ts";
import type { Backend, Session } from "../backends/backend.ts";
import { exists } from "./files.ts";
import { graphPath, type Prepare } from "./model_folder.ts";
import { type OnDemandSession, onDemandSession } from "./on_demand_session.ts";

/** The graphs a denoiser may be in: the Stable Diffusion families' and the DiTs'. */
const DENOISERS = ["unet", "transformer"];

/** How a model's graphs run. */
export interface ExecutionSettings {
  /** Rows per denoiser call (default `auto`: ../pipelines/row_calls.ts#AUTO_MAX_CALL_VALUES). */
  cfgMode?: CfgMode;
  /** Denoiser sessions running a call's rows at the same time: 1 (default) or 2. */
  cfgParallelSize?: number;
  /**
   * Close the text encoders once prompts are encoded, so the denoiser runs alone; reopened by the
   * next request's encoding. `auto` (default): when {@linkcode offloadNeeded} says so.
   */
  offload?: boolean | "auto";
}

/** Bytes of a component's graph and external data in `dir` (0 when absent). */
async function graphBytes(dir: string, component: string): Promise<number> {
  let total = 0;
  for (const path of [graphPath(dir, component), `${graphPath(dir, component)}_data`]) {
    if (await exists(path)) total += (await Deno.stat(path)).size;
  }
  return total;
}

/** The fraction of memory that the text encoders and the denoiser may take together. */
export const OFFLOAD_ABOVE_FRACTION = 0.5;

/**
 * Whether `auto` offload applies: the weights of the text encoders and the denoiser in `dir`
 * together exceed {@linkcode OFFLOAD_ABOVE_FRACTION} of `memory` bytes (the machine's, by default),
 * leaving too little for the denoiser's activations beside them (q4 Qwen-Image: 16.9 GiB of
 * graphs on 24 GiB; docs/benchmarks.md).
 */
export async function offloadNeeded(
  dir: string,
  memory = Deno.systemMemoryInfo().total,
): Promise<boolean> {
  let total = 0;
  for (const component of [...DENOISERS, "text_encoder", "text_encoder_2"]) {
    total += await graphBytes(dir, component);
  }
  return total > OFFLOAD_ABOVE_FRACTION * memory;
}

/**
 * The {@linkcode Prepare} of `settings` for a folder on `backend` with `threads` intra-op threads:
 * the denoiser through {@linkcode rowCalls} (two sessions of half the threads each for
 * `cfgParallelSize` 2), and, with `offload`, each text encoder as an {@linkcode OnDemandSession}
 * that every denoiser call first closes.
 */
export function executionPrepare(
  settings: ExecutionSettings,
  backend: Backend,
  threads: number,
  offload: boolean,
): Prepare {
  const encoders: OnDemandSession[] = [];
  const parkEncoders = async () => {
    for (const e of encoders) await e.park();
  };
  return async (component, open) => {
    if (DENOISERS.includes(component)) {
      const parallel = Math.max(1, settings.cfgParallelSize ?? 1);
      const sessions: Session[] = [];
      const options = parallel > 1 ? { threads: Math.max(1, Math.floor(threads / parallel)) } : {};
      try {
        for (let k = 0; k < parallel; k++) sessions.push(await open(options));
      } catch (e) {
        for (const s of sessions) await s.release();
        throw e;
      }
      return rowCalls(sessions, backend, settings.cfgMode ?? "auto", parkEncoders);
    }
    if (offload && component.startsWith("text_encoder")) {
      const session = onDemandSession(
        await open(),
        () => open(),
        () => encoders.splice(encoders.indexOf(session), 1),
      );
      encoders.push(session);
      return session;
    }
    return await open();
  };
}
