/**
 * Where a LoRA target's weight lives in an exported graph. A torch export names each node by the
 * module scope it came from (`/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul`);
 * the initializer feeding that node is the module's weight, stored as torch exports it:
 *
 * - `MatMul` (a `Linear` on a 3-D input): `[in, out]`, the transpose of torch's weight, named
 *   `onnx::MatMul_NNNN`;
 * - `Gemm` (a `Linear` on a 2-D input): `[out, in]` with `transB = 1` (`[in, out]` without);
 * - `Conv`: `[out, in, kh, kw]`, named `<module>.weight`.
 *
 * Exporters that name nodes otherwise but keep parameter names (`<module>.weight`, possibly through a
 * `Transpose` or `Cast`) are found by the initializer's name instead.
 *
 * @module
 */
import pkg from "onnx-proto";
import { ModelLoadError } from "../errors.ts";

const { onnx } = pkg;

/** ONNX element types of weights this module can patch. */
const ELEMENT_TYPES: Record<number, "float32" | "float16"> = { 1: "float32", 10: "float16" };
const WEIGHT_OPS = new Set(["MatMul", "Gemm", "Conv"]);

/** One patchable weight: a module's matrix (or kernel) in the graph. */
export interface WeightTarget {
  /** The module path, dotted as in torch: `down_blocks.0.attentions.0.…attn1.to_q`. */
  module: string;
  op: "MatMul" | "Gemm" | "Conv";
  initializer: string;
  /** Dims as stored. */
  dims: number[];
  /** Stored `[in, out]` (the transpose of torch's `[out, in]`). */
  transposed: boolean;
  dtype: "float32" | "float16";
  /** The bytes: in `model.onnx` itself (`file` absent) or in the named external-data file. */
  location: { file?: string; offset: number; length: number };
}

/** A graph's patchable weights, by module path and by Kohya's flattened name. */
export interface GraphWeights {
  byModule: ReadonlyMap<string, WeightTarget>;
  /** `down_blocks_0_attentions_0_…_to_q` → target; `null` where two modules flatten alike. */
  byFlatName: ReadonlyMap<string, WeightTarget | null>;
  /** Every external-data file the graph refers to (a session needs them all). */
  externalFiles: readonly string[];
}

/** Kohya's module key: every `.` and `/` an `_`. */
export function flatName(module: string): string {
  return module.replace(/[./]/g, "_");
}

/** Reads the patchable weights of a serialized `ModelProto` (`bytes` is read, never kept). */
export function indexGraphWeights(bytes: Uint8Array, label: string): GraphWeights {
  let model: pkg.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ModelLoadError(`Cannot read ${label}: ${(e as Error).message}`);
  }
  const graph = model.graph;
  const inits = new Map((graph?.initializer ?? []).map((t) => [t.name ?? "", t]));
  const producers = new Map<string, pkg.onnx.INodeProto>();
  const uses = new Map<string, number>();
  for (const node of graph?.node ?? []) {
    for (const out of node.output ?? []) producers.set(out, node);
    for (const input of node.input ?? []) uses.set(input, (uses.get(input) ?? 0) + 1);
  }

  /** The initializer behind `name`, through at most two Transpose/Cast nodes. */
  const source = (name: string): { init: pkg.onnx.ITensorProto; flipped: boolean } | undefined => {
    let flipped = false;
    for (let hop = 0; hop < 3; hop++) {
      const init = inits.get(name);
      if (init) return { init, flipped };
      const node = producers.get(name);
      if (!node || (node.opType !== "Transpose" && node.opType !== "Cast")) return undefined;
      if (node.opType === "Transpose") flipped = !flipped;
      name = node.input?.[0] ?? "";
    }
    return undefined;
  };

  const found = new Map<string, WeightTarget | null>();
  for (const node of graph?.node ?? []) {
    const op = node.opType ?? "";
    if (!WEIGHT_OPS.has(op)) continue;
    // torch puts the weight second: x·W (MatMul), x·Wᵀ + b (Gemm), conv(x, W).
    const src = source(node.input?.[1] ?? "");
    if (!src) continue;
    const name = src.init.name ?? "";
    const module = moduleOf(node.name ?? "", op) ??
      (name.endsWith(".weight") ? name.slice(0, -".weight".length) : undefined);
    if (!module) continue;
    const transB = node.attribute?.find((a) => a.name === "transB")?.i ?? 0;
    // What the node computes with: MatMul and Gemm without transB read [in, out].
    const readsInOut = op === "MatMul" || (op === "Gemm" && Number(transB) === 0);
    const target = describe(module, op as WeightTarget["op"], src.init, bytes, label);
    if (!target) continue;
    target.transposed = op !== "Conv" && readsInOut !== src.flipped;
    // A weight shared by several nodes, or two weights under one scope: not a LoRA target.
    const shared = (uses.get(name) ?? 0) > 1;
    found.set(module, found.has(module) || shared ? null : target);
  }
  const byModule = new Map<string, WeightTarget>();
  const byFlatName = new Map<string, WeightTarget | null>();
  for (const [module, target] of found) {
    if (!target) continue;
    byModule.set(module, target);
    const flat = flatName(module);
    byFlatName.set(flat, byFlatName.has(flat) ? null : target);
  }
  const externalFiles = new Set<string>();
  for (const init of inits.values()) {
    const file = init.externalData?.find((e) => e.key === "location")?.value;
    if (init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL && file) {
      externalFiles.add(file);
    }
  }
  return { byModule, byFlatName, externalFiles: [...externalFiles] };
}

/** `/a/b.0/c/MatMul` (or `…/MatMul_1`) → `a.b.0.c`; undefined for unscoped names. */
function moduleOf(nodeName: string, op: string): string | undefined {
  const parts = nodeName.split("/").filter((p) => p !== "");
  const last = parts.pop();
  if (!last || parts.length === 0 || !new RegExp(`^${op}(_\\d+)?$`).test(last)) return undefined;
  return parts.join(".");
}

function describe(
  module: string,
  op: WeightTarget["op"],
  init: pkg.onnx.ITensorProto,
  bytes: Uint8Array,
  label: string,
): WeightTarget | undefined {
  const dtype = ELEMENT_TYPES[init.dataType ?? 0];
  const dims = (init.dims ?? []).map(Number);
  if (!dtype || (op === "Conv" ? dims.length !== 4 : dims.length !== 2)) return undefined;
  const count = dims.reduce((a, b) => a * b, 1);
  const length = count * (dtype === "float32" ? 4 : 2);
  const base = { module, op, initializer: init.name ?? "", dims, transposed: false, dtype };
  if (init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const entry = (key: string) => init.externalData?.find((e) => e.key === key)?.value;
    const file = entry("location");
    const offset = Number(entry("offset") ?? 0);
    if (!file || !Number.isSafeInteger(offset) || Number(entry("length") ?? length) !== length) {
      throw new ModelLoadError(`Cannot read ${label}: bad external data entry for ${init.name}`);
    }
    return { ...base, location: { file, offset, length } };
  }
  const raw = init.rawData;
  // protobufjs decodes bytes fields as views of the input, so the view's offset is the file's.
  if (!raw || raw.length !== length || raw.buffer !== bytes.buffer) return undefined;
  return { ...base, location: { offset: raw.byteOffset - bytes.byteOffset, length } };
}
