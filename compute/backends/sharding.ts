/**
 * Graphs larger than one session can hold, opened as consecutive shards (`--shard-size`): the
 * graph is cut into ranges of nodes (../graph/shard_graph.ts), each opened as its own session
 * with only its own weights, read from disk one shard at a time; a run feeds each shard the graph
 * inputs and earlier shards' tensors it reads. On WebGPU the tensors passed between shards stay
 * in GPU buffers.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import pkg from "onnx-proto";
import {
  type Backend,
  type BackendSettings,
  type DeviceName,
  formatBytes,
  type GraphInput,
  type OpenOptions,
  type Session,
  type Tensor,
  type TensorInfo,
} from "./backend.ts";
import { ModelLoadError } from "../errors.ts";
import { WASM_MAX_WEIGHT_BYTES } from "./onnxruntime_web.ts";
import { type GraphShard, ShardTooLargeError, splitModel } from "../graph/shard_graph.ts";

const DataType = pkg.onnx.TensorProto.DataType;

/**
 * The most bytes a WebGPU session's external data may hold: onnxruntime-web reads its offsets as
 * 32-bit numbers (docs/benchmarks.md, "Shards": a 4.04 GiB graph ran whole with a wrong output).
 */
export const WEBGPU_MAX_SHARD_BYTES = 2 ** 32 - 1;

/**
 * The shard size `auto` gives each device, in weight bytes; none where one session holds any
 * graph. WebGPU: onnxruntime-web uploads each initializer from its external-data buffer, reading
 * the offset as a 32-bit number (a file over 4 GiB is misread past 4 GiB), and refuses a protobuf
 * over 2 GB; shards of 1 GiB, each with a buffer of its own, stay well inside both. WASM keeps
 * every session's weights in its one 4 GiB heap, so shards would not help it (its own check
 * refuses what does not fit); native CPU has neither limit and loads whole with no more memory
 * (docs/benchmarks.md, "Shards").
 */
export const AUTO_SHARD_BYTES: Readonly<Record<DeviceName, number | undefined>> = {
  webgpu: 2 ** 30,
  wasm: undefined,
  cpu: undefined,
};

/** Total bytes of `graph`: its serialized model and its external data. */
async function graphBytes(graph: GraphInput): Promise<number> {
  if ("path" in graph) {
    return (await Deno.stat(graph.path)).size +
      (graph.externalDataPath ? (await Deno.stat(graph.externalDataPath)).size : 0);
  }
  return graph.bytes.length +
    [...graph.externalData?.values() ?? []].reduce((s, d) => s + d.length, 0);
}

/** Where a shard's external data comes from: a file on disk, or buffers in memory. */
type DataSource =
  | { file: string }
  | { buffers: ReadonlyMap<string, Uint8Array> }
  | undefined;

/**
 * `shard` as a graph to open: external data by reference to the original file on native CPU,
 * which reads just the ranges it names; otherwise the shard's ranges copied into one buffer of
 * its own, read from disk now (so only this shard's weights are in memory).
 */
async function shardInput(
  shard: GraphShard,
  source: DataSource,
  device: DeviceName,
): Promise<GraphInput> {
  const encode = () => pkg.onnx.ModelProto.encode(shard.model).finish();
  const external = (shard.model.graph?.initializer ?? []).filter((t) => t.externalData?.length);
  if (!source || external.length === 0) return { bytes: encode() };
  const field = (t: pkg.onnx.ITensorProto, key: string) =>
    t.externalData!.find((e) => e.key === key)?.value ?? "";
  if ("file" in source && device === "cpu") {
    const real = await Deno.realPath(source.file);
    for (const t of external) {
      t.externalData = t.externalData!.map((e) =>
        e.key === "location" ? { key: e.key, value: basename(real) } : e
      );
    }
    return { bytes: encode(), externalDataFolder: dirname(real) };
  }
  const total = external.reduce((s, t) => s + Number(field(t, "length")), 0);
  const data = new Uint8Array(total);
  const path = "file" in source ? source.file : undefined;
  const file = path ? await Deno.open(path) : undefined;
  try {
    let at = 0;
    for (const t of external) {
      const offset = Number(field(t, "offset") || 0);
      const length = Number(field(t, "length"));
      if (file) {
        await file.seek(offset, Deno.SeekMode.Start);
        const view = data.subarray(at, at + length);
        for (let read = 0; read < length;) {
          const n = await file.read(view.subarray(read));
          if (n === null) throw new Error(`${path} ends before byte ${offset + length}`);
          read += n;
        }
      } else {
        const buffer = (source as { buffers: ReadonlyMap<string, Uint8Array> }).buffers.get(
          field(t, "location"),
        );
        if (!buffer) throw new Error(`external data ${field(t, "location")} was not given`);
        data.set(buffer.subarray(offset, offset + length), at);
      }
      t.externalData = [
        { key: "location", value: "shard.onnx_data" },
        { key: "offset", value: String(at) },
        { key: "length", value: String(length) },
      ];
      at += length;
    }
  } finally {
    file?.close();
  }
  return { bytes: encode(), externalData: new Map([["shard.onnx_data", data]]) };
}

/** The declared form of a value info, for a graph input or output no shard session reports. */
function declaredInfo(v: pkg.onnx.IValueInfoProto): TensorInfo {
  const type = DataType[v.type?.tensorType?.elemType ?? 0]?.toLowerCase() ?? "unknown";
  return {
    name: v.name ?? "",
    type: type === "float" ? "float32" : type,
    shape: (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue)),
  };
}

/** A graph opened as `shards`, one session each, run one after the other. */
function shardedSession(
  sessions: Session[],
  shards: GraphShard[],
  graph: pkg.onnx.IGraphProto,
): Session {
  const outputNames = (graph.output ?? []).map((v) => v.name ?? "");
  // Index of the last shard that reads each tensor made by a shard, to free it after.
  const lastRead = new Map<string, number>();
  shards.forEach((s, i) => s.inputs.forEach((n) => lastRead.set(n, i)));
  const find = (v: pkg.onnx.IValueInfoProto, side: "inputs" | "outputs") =>
    sessions.flatMap((s) => s[side]).find((t) => t.name === v.name) ?? declaredInfo(v);
  return {
    inputs: (graph.input ?? []).map((v) => find(v, "inputs")),
    outputs: (graph.output ?? []).map((v) => find(v, "outputs")),
    async run(feeds) {
      const values = new Map<string, Tensor>(Object.entries(feeds));
      const made: Tensor[] = [];
      try {
        for (const [i, shard] of shards.entries()) {
          const feed = Object.fromEntries(shard.inputs.map((n) => [n, values.get(n)!]));
          const out = await sessions[i].run(feed);
          for (const name of shard.outputs) {
            values.set(name, out[name]);
            if (!outputNames.includes(name)) made.push(out[name]);
          }
          // GPU buffers no later shard reads go back now, not when the whole run ends.
          for (const name of shard.inputs) {
            const t = values.get(name)!;
            if (lastRead.get(name) === i && !(name in feeds) && !outputNames.includes(name)) {
              t.dispose();
              made.splice(made.indexOf(t), 1);
            }
          }
        }
      } finally {
        for (const t of made) t.dispose();
      }
      return Object.fromEntries(outputNames.map((n) => [n, values.get(n)!]));
    },
    async release() {
      for (const s of sessions) await s.release();
    },
  };
}

/**
 * `backend`, opening each graph whose weights exceed `shardSize` (bytes, or `auto`:
 * {@linkcode AUTO_SHARD_BYTES}) as consecutive shards of at most that size (told to `onSharded`), behind the same
 * {@linkcode Session} interface. A graph with a node whose own weights exceed the size is refused
 * with a {@linkcode ModelLoadError} giving the figures.
 */
export function withSharding(
  backend: Backend,
  { shardSize = "auto", onSharded }: Pick<BackendSettings, "shardSize" | "onSharded"> = {},
): Backend {
  const asked = shardSize === "auto" ? AUTO_SHARD_BYTES[backend.device] : shardSize;
  // Past WEBGPU_MAX_SHARD_BYTES onnxruntime-web misreads external data: no size may exceed it.
  const limit = backend.device === "webgpu"
    ? Math.min(asked ?? Infinity, WEBGPU_MAX_SHARD_BYTES)
    : asked;
  if (limit === undefined) return backend;
  return {
    ...backend,
    async createSession(graph: GraphInput, options?: OpenOptions): Promise<Session> {
      const size = await graphBytes(graph);
      // WASM holds every session's weights in its one heap: shards do not make a graph fit that
      // its own check refuses whole.
      const tooLargeForWasm = backend.device === "wasm" && size > WASM_MAX_WEIGHT_BYTES;
      if (size <= limit || tooLargeForWasm) return await backend.createSession(graph, options);
      const bytes = "path" in graph ? await Deno.readFile(graph.path) : graph.bytes;
      const model = pkg.onnx.ModelProto.decode(bytes);
      // The component's folder and file, as the model folder's other load errors name them.
      const label = "path" in graph ? graph.path.split("/").slice(-2).join("/") : "the graph";
      let shards: GraphShard[];
      try {
        shards = splitModel(model, limit);
      } catch (e) {
        if (!(e instanceof ShardTooLargeError)) throw e;
        throw new ModelLoadError(
          `Cannot load ${label} (${formatBytes(size)}) in shards of ${
            formatBytes(limit)
          } on ${backend.device}: ${(e as Error).message}; give a larger --shard-size`,
        );
      }
      if (shards.length === 1) return await backend.createSession(graph, options);
      const source: DataSource = "path" in graph
        ? graph.externalDataPath ? { file: graph.externalDataPath } : undefined
        : graph.externalData
        ? { buffers: graph.externalData }
        : undefined;
      const sessions: Session[] = [];
      try {
        for (const shard of shards) {
          const elemTypes = new Map(
            (shard.model.graph?.output ?? []).map((v) => [v.name, v.type?.tensorType?.elemType]),
          );
          const graphOutputs = new Set((model.graph?.output ?? []).map((v) => v.name));
          const deviceOutputs = shard.outputs.filter((n) =>
            !graphOutputs.has(n) &&
            [DataType.FLOAT, DataType.FLOAT16].includes(elemTypes.get(n) ?? 0)
          );
          sessions.push(
            await backend.createSession(await shardInput(shard, source, backend.device), {
              ...options,
              deviceOutputs,
            }),
          );
        }
      } catch (e) {
        for (const s of sessions) await s.release();
        throw e;
      }
      onSharded?.(label, shards.map((s) => s.weightBytes));
      return shardedSession(sessions, shards, model.graph ?? {});
    },
  };
}
