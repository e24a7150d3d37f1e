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

/** Creates an onnxruntime-web backend on WebGPU or WASM. */
export function createWebBackend(
  device: "webgpu" | "wasm",
  adapter: { description: string; shaderF16: boolean } = { description: "", shaderF16: true },
): Backend {
  return {
    device,
    description: device === "webgpu"
      ? `onnxruntime-web ${ort.env.versions.web} WebGPU (${adapter.description})`
      : `onnxruntime-web ${ort.env.versions.web} WASM, 1 thread`,
    async createSession(graph: GraphInput): Promise<Session> {
      const label = "path" in graph ? graph.path : "the graph";
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
