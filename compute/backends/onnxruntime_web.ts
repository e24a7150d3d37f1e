/**
 * `webgpu` and `wasm`: onnxruntime-web. The `/webgpu` entry carries both execution providers;
 * the bare import would pick a WASM-only build in Deno. WASM runs single-threaded because
 * multi-threaded WASM needs workers from blob URLs, which Deno does not allow.
 *
 * @module
 */
import * as ort from "onnxruntime-web/webgpu";
import { dirname, join } from "node:path";
import {
  type Backend,
  type GraphInput,
  type Session,
  tensorInfo,
  type TensorType,
} from "./backend.ts";
import { toFloat16 } from "./float16.ts";
import { BackendUnavailableError } from "../errors.ts";

ort.env.wasm.numThreads = 1;
ort.env.logLevel = "error";

/**
 * The most weight bytes one WASM session may hold. The WASM heap is 4 GiB, and a forward needs
 * room beside its weights: SD-1.5's float32 UNet (3.2 GiB of weights) fails mid-run with
 * `std::bad_alloc` (docs/benchmarks.md, "Realistic width"). Refusing at load is the honest answer.
 */
export const WASM_MAX_WEIGHT_BYTES = 2.5 * 2 ** 30;

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** Creates an onnxruntime-web backend on WebGPU or WASM. */
export function createWebBackend(
  device: "webgpu" | "wasm",
  adapter: { description: string; shaderF16: boolean } = { description: "", shaderF16: true },
  { maxWasmWeightBytes = WASM_MAX_WEIGHT_BYTES }: { maxWasmWeightBytes?: number } = {},
): Backend {
  return {
    device,
    description: device === "webgpu"
      ? `onnxruntime-web ${ort.env.versions.web} WebGPU (${adapter.description})`
      : `onnxruntime-web ${ort.env.versions.web} WASM, 1 thread`,
    async createSession(graph: GraphInput): Promise<Session> {
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
      const bytes = "path" in graph ? await Deno.readFile(graph.path) : graph.bytes;
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: [device],
        graphOptimizationLevel: "all",
        externalData,
        logSeverityLevel: 3,
      });
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
        run: (feeds) => session.run(feeds as Record<string, ort.Tensor>),
        release: () => session.release(),
      };
    },
    tensor(type: TensorType, data, dims) {
      const values = type === "float16" ? toFloat16(data as Float32Array) : data;
      return new ort.Tensor(type, values as Float32Array, dims);
    },
  };
}
