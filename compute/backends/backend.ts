/**
 * One interface over the three ONNX Runtime builds: `webgpu` and `wasm` (onnxruntime-web) and
 * `cpu` (onnxruntime-node, native). Pipelines only see {@linkcode Backend} and
 * {@linkcode Session}; tensors are onnxruntime-common `Tensor`s of the backend that made them.
 *
 * @module
 */
import type { Tensor } from "onnxruntime-common";
import { fromFloat16 } from "./float16.ts";

export type { Tensor };

/** A concrete execution backend. */
export type DeviceName = "webgpu" | "wasm" | "cpu";
/** What a user may ask for; `auto` picks the fastest available. */
export type DeviceChoice = DeviceName | "auto";
/** Every accepted `--device` value. */
export const DEVICE_CHOICES: readonly DeviceChoice[] = ["auto", "webgpu", "wasm", "cpu"];

/** Element types diffusion graphs use at their boundaries. */
export type TensorType = "float32" | "float16" | "int32" | "int64";

/** A graph input or output as declared in the model (symbolic dims are strings). */
export interface TensorInfo {
  name: string;
  type: string;
  shape: readonly (number | string)[];
}

/** A graph to open: its file, or its serialized bytes with any external-data files in memory. */
export type GraphInput =
  | {
    path: string; /** The `model.onnx_data` next to the model, if it has one. */
    externalDataPath?: string;
  }
  | {
    bytes: Uint8Array; /** External-data files by the name the graph gives them. */
    externalData?: ReadonlyMap<string, Uint8Array>;
    /**
     * The folder the graph's external-data files are read from by name, when they are not given
     * in `externalData` (native CPU only: a graph split into shards, `./sharding.ts`).
     */
    externalDataFolder?: string;
  };

/** How to open one graph, beside its bytes. */
export interface OpenOptions {
  /**
   * Outputs to leave on the device (WebGPU's GPU buffers) for the next session to read, rather
   * than copy back to the CPU; backends without device memory ignore it.
   */
  deviceOutputs?: readonly string[];
  /**
   * Intra-op threads of this session instead of the backend's (native CPU only: two sessions of
   * `--cfg-parallel-size 2` take half the cores each); others ignore it.
   */
  threads?: number;
}

/** How a backend runs graphs (`--threads`, `--disable-attention-fusion`). */
export interface BackendSettings {
  /** Threads of the native CPU and WASM backends (default: every core). */
  threads?: number;
  /**
   * Rewrite exported attention into ONNX Runtime's fused `MultiHeadAttention` at load
   * (`graph/attention_fusion.ts`): default on for native CPU and WebGPU; never on WASM, whose
   * kernel overflows at large sizes (`onnxruntime_web.ts`).
   */
  fuseAttention?: boolean;
  /** Told when ONNX Runtime refuses a fused graph; the exported one is opened instead. */
  onFusionRefused?: (error: Error) => void;
  /**
   * Weight bytes above which a graph opens as consecutive shards, each its own session
   * (`--shard-size`, `./sharding.ts`): `auto` (default) splits only what this backend's limits
   * require; a number forces that size.
   */
  shardSize?: number | "auto";
  /** Told of each graph opened in shards: its file, and each shard's weight bytes. */
  onSharded?: (graph: string, shardBytes: readonly number[]) => void;
}

/** `bytes` in the largest binary unit below it: "1.0 GiB", "40.0 KiB". */
export function formatBytes(bytes: number): string {
  const unit = Math.min(3, Math.max(0, Math.floor(Math.log2(Math.max(bytes, 1)) / 10)));
  return unit === 0 ? `${bytes} B` : `${(bytes / 2 ** (10 * unit)).toFixed(1)} ${" KMG"[unit]}iB`;
}

/** Parses a `--shard-size` value: `auto`, or bytes (a plain number, or with `K`/`M`/`G` suffix). */
export function parseShardSize(text: string): number | "auto" | undefined {
  if (text === "auto") return "auto";
  const match = /^(\d+(?:\.\d+)?)([KMG]i?B?)?$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = match[2]?.[0]?.toUpperCase();
  const bytes = Number(match[1]) * (unit ? 2 ** (10 * (" KMG".indexOf(unit))) : 1);
  return bytes >= 1 ? Math.floor(bytes) : undefined;
}

/** A loaded graph. */
export interface Session {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

/** An ONNX Runtime build bound to one device. */
export interface Backend {
  readonly device: DeviceName;
  /** Human-readable description (adapter, threads). */
  readonly description: string;
  createSession(graph: GraphInput, options?: OpenOptions): Promise<Session>;
  /** Makes a CPU tensor; float16 data is given as float32 and converted. */
  tensor(
    type: TensorType,
    data: Float32Array | BigInt64Array | Int32Array,
    dims: readonly number[],
  ): Tensor;
}

/** onnxruntime-common's per-input/output metadata (both runtimes share its shape). */
export interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

/** Our {@linkcode TensorInfo} from onnxruntime's `inputMetadata`/`outputMetadata`. */
export function tensorInfo(m: OrtValueMetadata): TensorInfo {
  return {
    name: m.name,
    type: m.isTensor ? m.type ?? "unknown" : "non-tensor",
    shape: m.shape ?? [],
  };
}

/** Reads any float tensor (float32 or float16, CPU or device) as a Float32Array. */
export async function readFloat32(t: Tensor): Promise<Float32Array> {
  const data = await t.getData();
  if (data instanceof Float32Array) return data;
  if (data instanceof Float16Array) return fromFloat16(data);
  throw new TypeError(`Expected a float tensor, got ${t.type}`);
}
