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
 * The converter's quantized graphs (`--dtype q8|q4`, `compute/graph/quantize.ts`) hold their linear
 * layers' weights as integers: `q8` as an int8 initializer read through `DequantizeLinear` (one
 * scale per output channel) into the same `MatMul`/`Gemm`; `q4` as the packed 4-bit blocks and
 * scales of a `MatMulNBits` node (`/<module>/MatMulNBits`), whose weight is torch's `[N, K]`. Both
 * are targets too, with their scales' location: a merge dequantizes, adds and quantizes again.
 * A UNet's conv kernels are int8 the same way at `q8`, and at `q4` 4-bit blocks in
 * `MatMulNBits`' layout behind ONNX Runtime's `DequantizeLinear` (uint4 rows of 32) and a
 * `Reshape` to the kernel.
 *
 * @module
 */
import pkg from "onnx-proto";
import { ModelLoadError } from "../errors.ts";
import { DType } from "../graph/onnx_builder.ts";
import { Q4_BLOCK } from "../graph/quantize.ts";

const { onnx } = pkg;

/** ONNX element types of weights this module can patch, and their bytes per element. */
const ELEMENT_TYPES: Record<number, ["float32" | "float16" | "int8", number]> = {
  1: ["float32", 4],
  10: ["float16", 2],
  3: ["int8", 1],
};
const WEIGHT_OPS = new Set(["MatMul", "Gemm", "Conv", "MatMulNBits"]);
/** Nodes between a weight's initializer and the node that uses it. */
const HOPS = new Set(["Transpose", "Cast", "Reshape", "DequantizeLinear"]);

/** Where an initializer's bytes are: in `model.onnx` itself (`file` absent) or in an external file. */
export interface Location {
  file?: string;
  offset: number;
  length: number;
}

/** How a quantized weight is stored (the converter's `--dtype q8|q4`). */
export type Quantization =
  /** int8 values as stored, `DequantizeLinear` with one float32 scale per index of `axis`. */
  | { kind: "int8"; axis: number; scales: Location }
  /**
   * `MatMulNBits`' layout: `[rows, blocks, 16]` bytes of 4-bit codes (zero point 8), a scale per
   * block; `rows` is `N` for `MatMulNBits`, 1 for a conv kernel (blocks over all its values).
   */
  | { kind: "q4"; rows: number; blocks: number; scales: Location };

/** One patchable weight: a module's matrix (or kernel) in the graph. */
export interface WeightTarget {
  /** The module path, dotted as in torch: `down_blocks.0.attentions.0.…attn1.to_q`. */
  module: string;
  op: "MatMul" | "Gemm" | "Conv" | "MatMulNBits";
  initializer: string;
  /** Dims as stored (`MatMulNBits`: torch's `[N, K]`, which its packed blocks hold). */
  dims: number[];
  /** Stored `[in, out]` (the transpose of torch's `[out, in]`). */
  transposed: boolean;
  dtype: "float32" | "float16" | "int8" | "q4";
  /** The bytes of the values. */
  location: Location;
  /** For quantized weights: how to read and write them. */
  quantization?: Quantization;
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

  /**
   * The initializer behind `name`, through at most two Transpose/Cast/Reshape nodes and a
   * `DequantizeLinear` (which `dequantize` then names; a `Reshape`, `reshape`).
   */
  const source = (
    name: string,
  ):
    | {
      init: pkg.onnx.ITensorProto;
      flipped: boolean;
      dequantize?: pkg.onnx.INodeProto;
      reshape?: pkg.onnx.INodeProto;
    }
    | undefined => {
    let flipped = false;
    let dequantize: pkg.onnx.INodeProto | undefined;
    let reshape: pkg.onnx.INodeProto | undefined;
    for (let hop = 0; hop < 3; hop++) {
      const init = inits.get(name);
      if (init) return { init, flipped, dequantize, reshape };
      const node = producers.get(name);
      const op = node?.opType;
      if (!node || !HOPS.has(op ?? "")) return undefined;
      if (op === "Transpose") flipped = !flipped;
      if (op === "Reshape") {
        if (reshape) return undefined;
        reshape = node;
      }
      if (op === "DequantizeLinear") {
        // As the converter writes it: symmetric int8 (values and scales), or 4-bit conv kernels
        // (values, scales and zero points).
        if (dequantize || ![2, 3].includes((node.input ?? []).length)) return undefined;
        dequantize = node;
      }
      name = node.input?.[0] ?? "";
    }
    return undefined;
  };

  const found = new Map<string, WeightTarget | null>();
  for (const node of graph?.node ?? []) {
    const op = node.opType ?? "";
    if (!WEIGHT_OPS.has(op)) continue;
    if (op === "MatMulNBits") {
      const module = moduleOf(node.name ?? "", op);
      const target = module && describeQ4(module, node, inits, bytes, label);
      if (!target) continue;
      const shared = (uses.get(target.initializer) ?? 0) > 1;
      found.set(module, found.has(module) || shared ? null : target);
      continue;
    }
    // torch puts the weight second: x·W (MatMul), x·Wᵀ + b (Gemm), conv(x, W).
    const src = source(node.input?.[1] ?? "");
    if (!src) continue;
    const name = src.init.name ?? "";
    const module = moduleOf(node.name ?? "", op) ??
      (name.endsWith(".weight") ? name.slice(0, -".weight".length) : undefined);
    if (!module) continue;
    if (src.init.dataType === DType.uint4) {
      const target = op === "Conv" && describeQ4Kernel(module, src, inits, bytes, label);
      if (!target) continue;
      const shared = (uses.get(name) ?? 0) > 1;
      found.set(module, found.has(module) || shared ? null : target);
      continue;
    }
    if (src.reshape || (src.dequantize?.input ?? []).length > 2) continue;
    const transB = node.attribute?.find((a) => a.name === "transB")?.i ?? 0;
    // What the node computes with: MatMul and Gemm without transB read [in, out].
    const readsInOut = op === "MatMul" || (op === "Gemm" && Number(transB) === 0);
    const target = describe(module, op as WeightTarget["op"], src.init, bytes, label);
    if (!target) continue;
    if ((target.dtype === "int8") !== (src.dequantize !== undefined)) continue;
    if (src.dequantize) {
      const scale = inits.get(src.dequantize.input?.[1] ?? "");
      const axis = Number(src.dequantize.attribute?.find((a) => a.name === "axis")?.i ?? 1);
      const channels = target.dims[axis < 0 ? axis + 2 : axis];
      const scales = scale && scale.dataType === 1 && (scale.dims ?? []).map(Number).join() ===
          `${channels}` &&
        locate(scale, channels * 4, bytes, label);
      if (!scales || src.flipped) continue;
      target.quantization = { kind: "int8", axis: axis < 0 ? axis + 2 : axis, scales };
    }
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
  const [dtype, size] = ELEMENT_TYPES[init.dataType ?? 0] ?? [];
  const dims = (init.dims ?? []).map(Number);
  if (!dtype || !size || (op === "Conv" ? dims.length !== 4 : dims.length !== 2)) return undefined;
  const location = locate(init, dims.reduce((a, b) => a * b, 1) * size, bytes, label);
  if (!location) return undefined;
  return { module, op, initializer: init.name ?? "", dims, transposed: false, dtype, location };
}

/**
 * A `MatMulNBits` node's weight (4 bits, blocks of 32 along K, float32 scales, no zero points: as
 * the converter writes `--dtype q4`).
 */
function describeQ4(
  module: string,
  node: pkg.onnx.INodeProto,
  inits: ReadonlyMap<string, pkg.onnx.ITensorProto>,
  bytes: Uint8Array,
  label: string,
): WeightTarget | undefined {
  const attribute = (name: string) => Number(node.attribute?.find((a) => a.name === name)?.i ?? 0);
  const [n, k, bits, block] = ["N", "K", "bits", "block_size"].map(attribute);
  const [, packed, scale, zeroPoints] = node.input ?? [];
  const values = inits.get(packed ?? ""), scales = inits.get(scale ?? "");
  if (bits !== 4 || block !== 32 || zeroPoints || !values || !scales || scales.dataType !== 1) {
    return undefined;
  }
  const blocks = Math.ceil(k / 32);
  if ((values.dims ?? []).map(Number).join() !== `${n},${blocks},16`) return undefined;
  const location = locate(values, n * blocks * 16, bytes, label);
  const scaleLocation = locate(scales, n * blocks * 4, bytes, label);
  if (!location || !scaleLocation) return undefined;
  return {
    module,
    op: "MatMulNBits",
    initializer: values.name ?? "",
    dims: [n, k],
    transposed: false,
    dtype: "q4",
    location,
    quantization: { kind: "q4", rows: n, blocks, scales: scaleLocation },
  };
}

/**
 * A UNet conv kernel at `q4`: `[blocks, 32]` uint4 codes (zero point 8), its values in torch's
 * order, a float32 scale per block, reshaped to the kernel's dims.
 */
function describeQ4Kernel(
  module: string,
  src: {
    init: pkg.onnx.ITensorProto;
    flipped: boolean;
    dequantize?: pkg.onnx.INodeProto;
    reshape?: pkg.onnx.INodeProto;
  },
  inits: ReadonlyMap<string, pkg.onnx.ITensorProto>,
  bytes: Uint8Array,
  label: string,
): WeightTarget | undefined {
  const dequantize = src.dequantize;
  const axis = Number(dequantize?.attribute?.find((a) => a.name === "axis")?.i ?? 1);
  if (dequantize?.domain !== "com.microsoft" || axis !== 0 || src.flipped) return;
  const shape = inits.get(src.reshape?.input?.[1] ?? "");
  const scales = inits.get(dequantize.input?.[1] ?? "");
  // Zero point 8 in every block, as the converter writes it (0x88: two codes a byte); checked where
  // it is stored inline, as it is for kernels of up to 2048 blocks.
  const zeroPoints = inits.get(dequantize.input?.[2] ?? "");
  const stored = zeroPoints?.rawData;
  if (zeroPoints?.dataType !== DType.uint4 || stored?.some((b) => b !== 0x88)) return;
  const raw = shape?.rawData;
  if (!raw || shape.dataType !== onnx.TensorProto.DataType.INT64 || raw.length !== 32) return;
  const dims = [...new BigInt64Array(raw.slice().buffer)].map(Number);
  const [blocks, block] = (src.init.dims ?? []).map(Number);
  const size = dims.reduce((a, b) => a * b, 1);
  if (block !== Q4_BLOCK || blocks * Q4_BLOCK !== size || scales?.dataType !== 1) return;
  if ((zeroPoints.dims ?? []).map(Number).join() !== `${blocks}`) return;
  const location = locate(src.init, size / 2, bytes, label);
  const scaleLocation = locate(scales, blocks * 4, bytes, label);
  if (!location || !scaleLocation) return;
  return {
    module,
    op: "Conv",
    initializer: src.init.name ?? "",
    dims,
    transposed: false,
    dtype: "q4",
    location,
    quantization: { kind: "q4", rows: 1, blocks, scales: scaleLocation },
  };
}

/** Where an initializer of `length` bytes lies: in `bytes` itself or in an external-data file. */
function locate(
  init: pkg.onnx.ITensorProto,
  length: number,
  bytes: Uint8Array,
  label: string,
): Location | undefined {
  if (init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const entry = (key: string) => init.externalData?.find((e) => e.key === key)?.value;
    const file = entry("location");
    const offset = Number(entry("offset") ?? 0);
    if (!file || !Number.isSafeInteger(offset) || Number(entry("length") ?? length) !== length) {
      throw new ModelLoadError(`Cannot read ${label}: bad external data entry for ${init.name}`);
    }
    return { file, offset, length };
  }
  const raw = init.rawData;
  // protobufjs decodes bytes fields as views of the input, so the view's offset is the file's.
  if (!raw || raw.length !== length || raw.buffer !== bytes.buffer) return undefined;
  return { offset: raw.byteOffset - bytes.byteOffset, length };
}
