/**
 * `cpu`: onnxruntime-node's native CPU execution provider, all cores.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
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
import { basename, dirname } from "node:path";

/**
 * onnxruntime-common keeps float16 data in Deno's `Float16Array`, which the N-API binding does not
 * recognise: it reads `tensor.data` and expects the raw bits as a `Uint16Array`. This hands it a
 * view of the same bits, leaving the tensor itself untouched.
 */
function nativeView(tensor: ort.Tensor): ort.Tensor {
  if (tensor.type !== "float16" || !(tensor.data instanceof Float16Array)) return tensor;
  const bits = new Uint16Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.length);
  return Object.create(tensor, { data: { value: bits } });
}

/** Options of {@linkcode createNodeBackend}. */
export interface NodeBackendOptions {
  /**
   * ONNX Runtime's CPU memory arena (default off): it keeps every buffer it ever grew to, so after
   * a burst of large requests the process stays at its peak (docs/benchmarks.md, "Memory").
   */
  cpuArena?: boolean;
  /**
   * Rewrite exported attention into ONNX Runtime's fused `MultiHeadAttention` at load (default
   * on; `graph/attention_fusion.ts`).
   */
  fuseAttention?: boolean;
  /** Told when ONNX Runtime refuses a fused graph; the exported one is opened instead. */
  onFusionRefused?: (error: Error) => void;
}

/**
 * `graph` with its attention fused, to open from memory, and the folder its external data is then
 * read from; undefined when nothing fuses. Opened from memory, ONNX Runtime refuses external data
 * that resolves outside that folder, and the Hugging Face cache's files are symlinks into its
 * `blobs/`: so the folder is the data file's real one, and the graph names the file by its real
 * name.
 */
async function fusedGraph(
  graph: GraphInput,
): Promise<{ bytes: Uint8Array; folder?: string } | undefined> {
  if (!("path" in graph)) {
    const bytes = rewriteForLoad(graph.bytes, { fuseAttention: true }).fused;
    return bytes && { bytes, folder: graph.externalDataFolder };
  }
  let folder = dirname(graph.path);
  const renamed = new Map<string, string>();
  if (graph.externalDataPath) {
    const real = await Deno.realPath(graph.externalDataPath);
    folder = dirname(real);
    renamed.set(basename(graph.externalDataPath), basename(real));
  }
  const bytes = rewriteForLoad(await Deno.readFile(graph.path), {
    fuseAttention: true,
    externalFiles: renamed,
  }).fused;
  return bytes && { bytes, folder };
}

/** Creates the native CPU backend. */
export function createNodeBackend(
  threads = navigator.hardwareConcurrency,
  { cpuArena = false, fuseAttention = true, onFusionRefused }: NodeBackendOptions = {},
): Backend {
  return {
    device: "cpu",
    description: `onnxruntime-node ${ort.env.versions?.common ?? ""} CPU, ${threads} threads`,
    async createSession(graph: GraphInput, open: OpenOptions = {}): Promise<Session> {
      const sessionConfig: Record<string, string> = { "intra_op.allow_spinning": "0" };
      const options: ort.InferenceSession.SessionOptions = {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
        // Without the arena, buffers go back to malloc (and, trimmed when the engine is idle, to
        // the system).
        enableCpuMemArena: cpuArena,
        intraOpNumThreads: open.threads ?? threads,
        logSeverityLevel: 3,
        // Spinning intra-op threads compete with Deno's own thread for the cores between runs;
        // with spinning on, step times were bimodal (1.7 or 5–11 ms at 512², docs/benchmarks.md).
        extra: { session: sessionConfig },
      };
      const fromMemory = (bytes: Uint8Array, folder?: string) =>
        ort.InferenceSession.create(bytes, {
          ...options,
          externalData: "bytes" in graph
            ? [...(graph.externalData ?? [])].map(([path, data]) => ({ path, data }))
            : undefined,
          extra: {
            session: {
              ...sessionConfig,
              ...folder && { model_external_initializers_file_folder_path: folder },
            },
          },
        });
      let session: ort.InferenceSession | undefined;
      const fused = fuseAttention ? await fusedGraph(graph) : undefined;
      if (fused) {
        try {
          session = await fromMemory(fused.bytes, fused.folder);
        } catch (e) {
          // Should this build refuse the fused graph, the exported one still runs, only slower.
          onFusionRefused?.(e as Error);
        }
      }
      // From a path, onnxruntime-node finds model.onnx_data itself, next to the model.
      session ??= "path" in graph
        ? await ort.InferenceSession.create(graph.path, options)
        : await fromMemory(graph.bytes, graph.externalDataFolder);
      return {
        inputs: session.inputMetadata.map(tensorInfo),
        outputs: session.outputMetadata.map(tensorInfo),
        run: (feeds) =>
          session.run(
            Object.fromEntries(
              Object.entries(feeds).map(([k, t]) => [k, nativeView(t as ort.Tensor)]),
            ),
          ),
        release: () => session.release(),
      };
    },
    tensor(type: TensorType, data, dims) {
      const values = type === "float16" ? toFloat16(data as Float32Array) : data;
      return new ort.Tensor(type, values as Float32Array, dims);
    },
  };
}
