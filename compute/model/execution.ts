/**
 * How a model's graphs run, for every family alike (the folder's {@linkcode Prepare}): the
 * denoiser's rows per call and sessions (`--cfg-mode`, `--cfg-parallel-size`:
 * ../pipelines/row_calls.ts) and whether the text encoders and the denoiser take turns in memory
 * (`--enable-cpu-offload`).
 *
 * @module
 */
import { type CfgMode, rowCalls } from "../pipelines/row_calls.ts";
import type { Backend, Session } from "../backends/backend.ts";
import { trimHeap } from "../backends/heap.ts";
import { ModelLoadError } from "../errors.ts";
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
   * The text encoders and the denoiser take turns: a run of one closes the other, which its next
   * run reopens (from the page cache). `auto` (default): when {@linkcode offloadNeeded} says so.
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
 * `cfgParallelSize` 2). With `offload`, vLLM-Omni's model-level offloading: the text encoders and
 * the denoiser's sessions are {@linkcode OnDemandSession}s, and a run of one group first closes
 * the other (the VAE stays open).
 */
export function executionPrepare(
  settings: ExecutionSettings,
  backend: Backend,
  threads: number,
  offload: boolean,
): Prepare {
  const groups = { encoders: [] as OnDemandSession[], denoisers: [] as OnDemandSession[] };
  const park = async (group: OnDemandSession[]) => {
    for (const s of group) await s.park();
  };
  /** `open` once, then on demand in `group`, closing `other` before each run. */
  const onDemand = async (
    open: () => Promise<Session>,
    group: OnDemandSession[],
    other: OnDemandSession[],
  ) => {
    // Opening one group closes the other: at load they are not both held either.
    await park(other);
    const session: OnDemandSession = onDemandSession(await open(), open, {
      beforeRun: () => park(other),
      afterPark: trimHeap,
      onRelease: () => {
        const k = group.indexOf(session);
        if (k >= 0) group.splice(k, 1);
      },
    });
    group.push(session);
    return session;
  };
  return async (component, open) => {
    if (DENOISERS.includes(component)) {
      const parallel = Math.max(1, settings.cfgParallelSize ?? 1);
      if (parallel > 1 && backend.device === "webgpu") {
        // Measured on lavapipe: two sessions' runs at once fail in the WebGPU backend
        // ("Argument 0 can not be converted to a GPUComputePipeline"), then abort the process.
        throw new ModelLoadError(
          `--cfg-parallel-size ${parallel} is not available on webgpu: ONNX Runtime Web runs one session at a time on its one adapter; use 1, or --device cpu or wasm`,
        );
      }
      const options = parallel > 1 ? { threads: Math.max(1, Math.floor(threads / parallel)) } : {};
      const opener = () => open(options);
      const sessions: Session[] = [];
      try {
        for (let k = 0; k < parallel; k++) {
          sessions.push(
            offload ? await onDemand(opener, groups.denoisers, groups.encoders) : await opener(),
          );
        }
      } catch (e) {
        for (const s of sessions) await s.release();
        throw e;
      }
      return rowCalls(sessions, backend, settings.cfgMode ?? "auto");
    }
    if (offload && component.startsWith("text_encoder")) {
      return await onDemand(() => open(), groups.encoders, groups.denoisers);
    }
    return await open();
  };
}
