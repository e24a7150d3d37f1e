/**
 * `webgpu` and `wasm`: onnxruntime-web, in two builds. WebGPU needs the `/webgpu` entry, whose
 * WASM runs one thread in Deno (its thread workers come from `blob:` URLs, which Deno refuses).
 * WASM uses the bare entry, for which Deno picks the Node build: its threads are `worker_threads`,
 * and it runs on every core (1.95× faster with 2 threads than 1 on a 102-GFLOP UNet here).
 *
 * @module
 */
import { dirname, join } from "node:path";
import {
  type Backend,
  type GraphInput,
  type OpenOptions,
  type Session,
  tensorInfo,
  type TensorType,
} from "./backend.ts";
import { toFloat16 } from "./float16.ts";
import { rewriteForLoad } from "../graph/load_rewrites.ts";
import { BackendUnavailableError } from "../errors.ts";

type Ort = typeof import("onnxruntime-web/webgpu");

/**
 * The most weight bytes one WASM session may hold. The WASM heap is 4 GiB, and a forward needs
 * room beside its weights: SD-1.5's float32 UNet (3.2 GiB of weights) fails mid-run with
 * `std::bad_alloc` (docs/benchmarks.md, "Realistic width"). Refusing at load is the honest answer.
 */
export const WASM_MAX_WEIGHT_BYTES = 2.5 * 2 ** 30;

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** Options of {@linkcode createWebBackend}. */
export interface WebBackendOptions {
  /** WASM threads (default: every core). */
  threads?: number;
  /** Largest graph (weights included) a WASM session may open. */
  maxWasmWeightBytes?: number;
  /**
   * Rewrite exported attention into ONNX Runtime's fused `MultiHeadAttention` at load
   * (`graph/attention_fusion.ts`); default on for WebGPU, off for WASM, whose kernel fails at run
   * time with "Integer overflow" once queries² × head size reaches 2³⁰ (its sizes are 32-bit: an
   * SD VAE decoding 512², an SD UNet at 1024²), which a load-time rewrite cannot rule out.
   */
  fuseAttention?: boolean;
  /** Told when ONNX Runtime refuses a fused graph; the exported one is opened instead. */
  onFusionRefused?: (error: Error) => void;
}

/** Creates an onnxruntime-web backend on WebGPU or WASM. */
export async function createWebBackend(
  device: "webgpu" | "wasm",
  adapter: { description: string; shaderF16: boolean } = { description: "", shaderF16: true },
  {
    threads = navigator.hardwareConcurrency,
    maxWasmWeightBytes = WASM_MAX_WEIGHT_BYTES,
    fuseAttention = device === "webgpu",
    onFusionRefused,
  }: WebBackendOptions = {},
): Promise<Backend> {
  const ort: Ort = device === "webgpu"
    ? await import("onnxruntime-web/webgpu")
    : await import("onnxruntime-web") as unknown as Ort;
  ort.env.wasm.numThreads = device === "webgpu" ? 1 : threads;
  ort.env.logLevel = "error";
  return {
    device,
    description: device === "webgpu"
      ? `onnxruntime-web ${ort.env.versions.web} WebGPU (${adapter.description})`
      : `onnxruntime-web ${ort.env.versions.web} WASM, ${threads} thread${threads > 1 ? "s" : ""}`,
    async createSession(graph: GraphInput, options: OpenOptions = {}): Promise<Session> {
      const label = "path" in graph ? graph.path : "the graph";
      if (device === "wasm") {
        const size = "path" in graph
          ? (await Deno.stat(graph.path)).size +
            (graph.externalDataPath ? (await Deno.stat(graph.externalDataPath)).size : 0)
          : graph.bytes.length +
            [...(graph.externalData?.values() ?? [])].reduce((s, d) => s + d.length, 0);
        if (size > maxWasmWeightBytes) {
          throw new BackendUnavailableError(
            `${label} holds ${gib(size)} of weights; WASM's 4 GiB memory runs at most ${
              gib(maxWasmWeightBytes)
            } with room for a forward pass. Use --device cpu (native) or webgpu, or a float16 export.`,
          );
        }
      }
      const externalData = "path" in graph
        ? graph.externalDataPath
          ? [{
            path: join(".", graph.externalDataPath.slice(dirname(graph.path).length + 1)),
            data: await Deno.readFile(graph.externalDataPath),
          }]
          : undefined
        : [...(graph.externalData ?? [])].map(([path, data]) => ({ path, data }));
      const read = "path" in graph ? await Deno.readFile(graph.path) : graph.bytes;
      // WebGPU's Conv miscomputes some input channel counts (compute/graph/conv_channel_padding.ts).
      const { exported, fused } = rewriteForLoad(read, {
        padConvChannels: device === "webgpu",
        fuseAttention,
      });
      const open = (bytes: Uint8Array) =>
        ort.InferenceSession.create(bytes, {
          executionProviders: [device],
          graphOptimizationLevel: "all",
          externalData,
          logSeverityLevel: 3,
          ...device === "webgpu" && options.deviceOutputs?.length && {
            preferredOutputLocation: Object.fromEntries(
              options.deviceOutputs.map((name) => [name, "gpu-buffer" as const]),
            ),
          },
        });
      // Should this build refuse the fused graph, the exported one still runs, only slower.
      const session = fused
        ? await open(fused).catch((e) => {
          onFusionRefused?.(e as Error);
          return open(exported);
        })
        : await open(exported);
      const io = [...session.inputMetadata, ...session.outputMetadata];
      if (
        device === "webgpu" && !adapter.shaderF16 &&
        io.some((m) => m.isTensor && m.type === "float16")
      ) {
        await session.release();
        throw new BackendUnavailableError(
          `${label} has float16 inputs/outputs, but this WebGPU adapter lacks the 'shader-f16' feature; use --device cpu or wasm`,
        );
      }
      return {
        inputs: session.inputMetadata.map(tensorInfo),
        outputs: session.outputMetadata.map(tensorInfo),
        run: (feeds) => session.run(feeds as Record<string, InstanceType<Ort["Tensor"]>>),
        release: () => session.release(),
      };
    },
    tensor(type: TensorType, data, dims) {
      const values = type === "float16" ? toFloat16(data as Float32Array) : data;
      return new ort.Tensor(type, values as Float32Array, dims);
    },
  };
}
