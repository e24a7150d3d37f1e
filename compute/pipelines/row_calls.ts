/**
 * How a denoiser's batch rows (the guided and unguided branches of CFG, the images of a request,
 * the requests of a batch) meet its sessions, for every family alike: all rows in one call
 * (`batch`, the form each pipeline builds), at most so many rows per call one after another
 * (`sequential`, as diffusers' `QwenImagePipeline` runs its two branches; less activation memory),
 * or the rows split over two sessions that run at the same time (`--cfg-parallel-size 2`). The
 * pipeline keeps building one batched call; {@linkcode rowCalls} splits it on the batch axis and
 * stacks the outputs back.
 *
 * @module
 */
import { type Backend, readFloat32, type Session, type Tensor } from "../backends/backend.ts";
import { InvalidInputError } from "../errors.ts";

/** `--cfg-mode`: how many of a call's rows the denoiser runs at once. */
export type CfgMode = "auto" | "batch" | "sequential";

/** Every accepted `--cfg-mode`. */
export const CFG_MODES: readonly CfgMode[] = ["auto", "batch", "sequential"];

/**
 * Latent values one call may hold under `auto` before it is split: one 1024² image of Qwen-Image or
 * Z-Image (16 channels at 1/8 scale: 16 × 128 × 128 = 2¹⁸). So a 1024² Qwen-Image request with
 * true CFG runs its two branches one after another (activations of batch 1, not 2:
 * docs/benchmarks.md), while 512² and every SD/SDXL size up to 2048² (4 channels) stay one call.
 */
export const AUTO_MAX_CALL_VALUES = 2 ** 18;

/** Rows per call for `mode` when one row of the latent input holds `valuesPerRow` values. */
export function rowsPerCall(mode: CfgMode, valuesPerRow: number): number {
  if (mode === "batch") return Infinity;
  if (mode === "sequential") return 1;
  return Math.max(1, Math.floor(AUTO_MAX_CALL_VALUES / valuesPerRow));
}

/** Sessions lent one call at a time: a call waits for a free one. */
class Pool {
  readonly #free: Session[];
  readonly #waiting: ((s: Session) => void)[] = [];

  constructor(sessions: readonly Session[]) {
    this.#free = [...sessions];
  }

  async use<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    const session = this.#free.pop() ??
      await new Promise<Session>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn(session);
    } finally {
      const next = this.#waiting.shift();
      if (next) next(session);
      else this.#free.push(session);
    }
  }
}

/** Rows `[from, to)` of a tensor whose axis 0 holds `rows`, as a tensor of `backend`. */
async function sliceRows(
  t: Tensor,
  from: number,
  to: number,
  backend: Backend,
): Promise<Tensor> {
  const per = t.size / t.dims[0];
  const dims = [to - from, ...t.dims.slice(1)];
  if (t.type === "int64" || t.type === "int32") {
    const data = (await t.getData()) as BigInt64Array | Int32Array;
    return backend.tensor(t.type, data.slice(from * per, to * per), dims);
  }
  if (t.type !== "float32" && t.type !== "float16") {
    throw new InvalidInputError(`cannot split a denoiser input of type ${t.type} by rows`);
  }
  // float16 travels as float32 here and back: both conversions are exact.
  return backend.tensor(t.type, (await readFloat32(t)).slice(from * per, to * per), dims);
}

/** Stacks each output of consecutive calls along axis 0. */
async function stackRows(
  parts: readonly Record<string, Tensor>[],
  backend: Backend,
): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const name of Object.keys(parts[0])) {
    const tensors = parts.map((p) => p[name]);
    const rows = tensors.reduce((sum, t) => sum + t.dims[0], 0);
    const data = new Float32Array(tensors.reduce((sum, t) => sum + t.size, 0));
    let offset = 0;
    for (const t of tensors) {
      data.set(await readFloat32(t), offset);
      offset += t.size;
      t.dispose();
    }
    out[name] = backend.tensor(
      tensors[0].type as "float32" | "float16",
      data,
      [rows, ...tensors[0].dims.slice(1)],
    );
  }
  return out;
}

/**
 * One denoiser session made of `sessions` (one, or two for `--cfg-parallel-size 2`): a call's
 * rows — the batch axis of the graph's first input and of every input sharing it — are split into
 * one contiguous group per session, run at the same time, each group in calls of at most
 * {@linkcode rowsPerCall} rows; the outputs are stacked back in order. A call that needs no split
 * runs as it is (today's bytes); so does any call of a graph whose batch axis is fixed. Concurrent
 * calls (Z-Image's two branches) each take a free session, or wait for one.
 */
export function rowCalls(
  sessions: readonly Session[],
  backend: Backend,
  mode: CfgMode,
): Session {
  const pool = new Pool(sessions);
  const [first] = sessions;
  const latent = first.inputs[0];
  const fixedBatch = typeof latent.shape[0] === "number" && latent.shape[0] > 0;
  return {
    inputs: first.inputs,
    outputs: first.outputs,
    async run(feeds) {
      const x = feeds[latent.name];
      const rows = x?.dims[0] ?? 0;
      const perCall = rowsPerCall(mode, x ? x.size / Math.max(1, rows) : 0);
      const groups = Math.min(sessions.length, rows);
      if (fixedBatch || !x || x.dims.length === 0 || (groups <= 1 && rows <= perCall)) {
        return await pool.use((s) => s.run(feeds));
      }
      const slice = async (from: number, to: number) => {
        const part: Record<string, Tensor> = {};
        for (const [name, t] of Object.entries(feeds)) {
          part[name] = t.dims.length > 0 && t.dims[0] === rows
            ? await sliceRows(t, from, to, backend)
            : t;
        }
        return part;
      };
      const size = Math.ceil(rows / groups);
      const results = await Promise.all(
        Array.from({ length: groups }, (_, g) =>
          pool.use(async (s) => {
            const parts: Record<string, Tensor>[] = [];
            const end = Math.min(rows, (g + 1) * size);
            for (let from = g * size; from < end; from += perCall) {
              parts.push(await s.run(await slice(from, Math.min(end, from + perCall))));
            }
            return parts;
          })),
      );
      return await stackRows(results.flat(), backend);
    },
    async release() {
      for (const s of sessions) await s.release();
    },
  };
}
