/**
 * An ONNX model folder (an export such as the embedded `models/shapes-tiny`, or a folder this
 * converter wrote at fp32) re-written at `q8` or `q4`, in the graphs the converter writes from
 * safetensors at those dtypes: each Linear layer's weight (a `MatMul` or `Gemm` on a float32
 * initializer) as int8 per output channel behind a `DequantizeLinear` (`q8`) or as a
 * `MatMulNBits` (`q4`, 4 bits, blocks of 32), and the UNet's conv kernels as int8 per output
 * channel (`q8`) or 4-bit blocks (`q4`) behind a `DequantizeLinear`. Norms, biases, embeddings, the
 * other graphs' convs and weights that are shared or not float32 stay as they are. Node names keep
 * the export's module scopes, so LoRA adapters still find their layers.
 *
 * Unlike the safetensors path this holds one graph and its weights in memory at a time: meant for
 * exports of up to a few GB.
 *
 * @module
 */
import { basename, join } from "node:path";
import pkg from "onnx-proto";
import { ConvertError } from "../errors.ts";
import {
  DType,
  EXTERNAL_DATA_THRESHOLD,
  Q4_ACCURACY_LEVEL,
  transpose,
  type WeightDtype,
} from "../graph/onnx_builder.ts";
import { int8Columns, int8Rows, Q4_BLOCK, q4Blocks } from "../graph/quantize.ts";
import { exists } from "../model/files.ts";
import type { OutputWriter } from "./components.ts";

const { onnx } = pkg;
type Tensor = pkg.onnx.ITensorProto;
type Node = pkg.onnx.INodeProto;

/** The graph file of each component folder, and its external data as the converter names it. */
const GRAPH = "model.onnx", EXTERNAL_DATA = "model.onnx_data";

/** Component folders whose conv kernels are quantized too (as the converter's UNet). */
const QUANTIZED_CONVS = new Set(["unet"]);

/**
 * Whether `src` is a model folder whose components are ONNX graphs (`<component>/model.onnx`) and
 * hold no safetensors: a diffusers folder that ships both is converted from its safetensors.
 */
export async function isOnnxModelFolder(src: string): Promise<boolean> {
  let graphs = false;
  try {
    for await (const entry of Deno.readDir(src)) {
      if (!entry.isDirectory) continue;
      for await (const file of Deno.readDir(join(src, entry.name))) {
        if (file.name.endsWith(".safetensors")) return false;
        if (file.name === GRAPH) graphs = true;
      }
    }
  } catch {
    // a missing or unreadable folder: not one
  }
  return graphs;
}

/**
 * Copies the model folder `src` through `writer`, every `<component>/model.onnx` re-written at
 * `dtype` (its weights in `model.onnx_data`), every other file as it is.
 */
export async function quantizeOnnxFolder(
  src: string,
  writer: OutputWriter,
  dtype: WeightDtype,
): Promise<void> {
  if (dtype !== "q8" && dtype !== "q4") {
    throw new ConvertError(
      `${src}: an ONNX model folder is re-written at q8 or q4 only (--dtype ${dtype})`,
    );
  }
  const copy = async (dir: string, prefix: string): Promise<void> => {
    const graph = await exists(join(dir, GRAPH));
    const externalFiles = graph ? await quantizeGraphFile(dir, prefix, writer, dtype) : [];
    for await (const entry of Deno.readDir(dir)) {
      const path = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = join(dir, entry.name);
      const info = await Deno.stat(full);
      if (info.isDirectory) await copy(full, path);
      else if (
        info.isFile &&
        !(graph && [GRAPH, EXTERNAL_DATA, ...externalFiles].includes(entry.name))
      ) {
        writer.file(path, await Deno.readFile(full));
      }
    }
  };
  await copy(src, "");
}

/** Re-writes `<dir>/model.onnx`; returns the external-data files it read (not copied). */
async function quantizeGraphFile(
  dir: string,
  prefix: string,
  writer: OutputWriter,
  dtype: "q8" | "q4",
): Promise<string[]> {
  const label = `${prefix}/${GRAPH}`;
  let model: pkg.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(await Deno.readFile(join(dir, GRAPH)));
  } catch (e) {
    throw new ConvertError(`${label}: not an ONNX model (${(e as Error).message})`);
  }
  const graph = model.graph;
  if (!graph?.node?.length) throw new ConvertError(`${label}: the model has no graph`);
  // DequantizeLinear's per-channel `axis` is opset 13's.
  const opset = Number(model.opsetImport.find((o) => !o.domain)?.version ?? 0);
  if (opset < 13) {
    throw new ConvertError(`${label}: opset ${opset} is too old to quantize (13 or later)`);
  }
  const files = new Map<string, Uint8Array>();
  for (const init of graph.initializer ?? []) {
    if (init.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const file = externalEntry(init, "location");
    if (!file || basename(file) !== file) {
      throw new ConvertError(`${label}: ${init.name}'s external data ${file} is not beside it`);
    }
    if (!files.has(file)) {
      files.set(
        file,
        await Deno.readFile(join(dir, file)).catch((e) => {
          throw new ConvertError(`${label}: cannot read its external data ${file} (${e.message})`);
        }),
      );
    }
  }
  const rawBytes = (init: Tensor): Uint8Array | undefined => {
    if (init.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) {
      return init.rawData ?? undefined;
    }
    const data = files.get(externalEntry(init, "location")!)!;
    const offset = Number(externalEntry(init, "offset") ?? 0);
    const length = Number(externalEntry(init, "length") ?? data.length - offset);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0) {
      throw new ConvertError(`${label}: ${init.name} has a bad external data entry`);
    }
    if (offset + length > data.length) {
      throw new ConvertError(`${label}: ${init.name} lies past the end of its external data`);
    }
    return data.subarray(offset, offset + length);
  };
  const rewrite = new GraphRewrite(graph, rawBytes, dtype, QUANTIZED_CONVS.has(basename(dir)))
    .quantize();
  graph.node = rewrite.node;
  // Older exports declare initializers as graph inputs too: the replaced ones are gone.
  const replaced = new Set(rewrite.replaced);
  graph.input = (graph.input ?? []).filter((v) => !replaced.has(v.name ?? ""));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !replaced.has(v.name ?? ""));
  if (rewrite.contrib && !model.opsetImport.some((o) => o.domain === "com.microsoft")) {
    model.opsetImport.push(new onnx.OperatorSetIdProto({ domain: "com.microsoft", version: 1 }));
  }
  // uint4 tensors are IR 10's.
  if (rewrite.uint4) model.irVersion = Math.max(Number(model.irVersion), 10);
  // Every initializer of 1 KiB or more in model.onnx_data, as the converter writes its graphs;
  // all read first, so that a bad one stops the conversion before anything is written.
  const initializers = [
    ...rewrite.kept.map((init) => ({ init, bytes: rawBytes(init) })),
    ...rewrite.added,
  ];
  const data = writer.append(prefix ? `${prefix}/${EXTERNAL_DATA}` : EXTERNAL_DATA);
  let offset = 0;
  try {
    graph.initializer = initializers.map(({ init, bytes }) => {
      // Small ones, and any stored in typed fields rather than bytes, stay inline as they are.
      if (!bytes || bytes.length < EXTERNAL_DATA_THRESHOLD) {
        return init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL
          ? new onnx.TensorProto({ ...init, dataLocation: 0, externalData: [], rawData: bytes })
          : new onnx.TensorProto({ ...init, ...bytes?.length && { rawData: bytes } });
      }
      data.append(bytes);
      offset += bytes.length;
      return new onnx.TensorProto({
        ...init,
        rawData: new Uint8Array(0),
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: EXTERNAL_DATA },
          { key: "offset", value: String(offset - bytes.length) },
          { key: "length", value: String(bytes.length) },
        ],
      });
    });
  } finally {
    data.close();
  }
  writer.file(label.replace(/^\//, ""), onnx.ModelProto.encode(model).finish());
  return [...files.keys()];
}

function externalEntry(init: Tensor, key: string): string | undefined {
  return init.externalData?.find((e) => e.key === key)?.value ?? undefined;
}

/** One graph's nodes with its Linear weights (and, with `convs`, conv kernels) quantized. */
class GraphRewrite {
  readonly #inits: Map<string, Tensor>;
  readonly #uses = new Map<string, number>();
  /** Initializers replaced by quantized ones. */
  readonly #replaced = new Set<string>();
  readonly #added: { init: Tensor; bytes: Uint8Array }[] = [];
  #contrib = false;

  constructor(
    readonly graph: pkg.onnx.IGraphProto,
    readonly rawBytes: (init: Tensor) => Uint8Array | undefined,
    readonly dtype: "q8" | "q4",
    readonly convs: boolean,
  ) {
    this.#inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
    for (const output of graph.output ?? []) this.#use(output.name ?? "");
    for (const node of graph.node ?? []) {
      for (const input of node.input ?? []) this.#use(input);
      // A weight a sub-graph (If, Loop) reads is one it must keep.
      for (const a of node.attribute ?? []) {
        for (const g of [a.g, ...a.graphs ?? []]) {
          for (const n of g?.node ?? []) {
            n.input?.forEach((x) => this.#use(x));
          }
        }
      }
    }
  }

  #use(name: string): void {
    this.#uses.set(name, (this.#uses.get(name) ?? 0) + 1);
  }

  quantize(): {
    node: Node[];
    kept: Tensor[];
    replaced: string[];
    added: { init: Tensor; bytes: Uint8Array }[];
    contrib: boolean;
    uint4: boolean;
  } {
    const node = (this.graph.node ?? []).flatMap((n) => this.#rewrite(n));
    const kept = (this.graph.initializer ?? []).filter((t) => !this.#replaced.has(t.name ?? ""));
    return {
      node,
      kept,
      replaced: [...this.#replaced],
      added: this.#added,
      contrib: this.#contrib,
      uint4: this.#added.some(({ init }) => init.dataType === DType.uint4),
    };
  }

  /** The float32 weight `name` read by this node alone, or undefined (left as it is). */
  #weight(
    name: string | undefined,
    rank: number,
  ): { dims: number[]; values: Float32Array } | undefined {
    const init = name === undefined ? undefined : this.#inits.get(name);
    if (!init || init.dataType !== DType.float32 || this.#uses.get(name!) !== 1) return undefined;
    const dims = (init.dims ?? []).map(Number);
    const bytes = this.rawBytes(init);
    if (dims.length !== rank || !bytes || bytes.length !== dims.reduce((a, b) => a * b, 4)) {
      return undefined;
    }
    this.#replaced.add(name!);
    return { dims, values: new Float32Array(bytes.slice().buffer) };
  }

  #rewrite(node: Node): Node[] {
    if (node.domain) return [node];
    const attr = (name: string) => node.attribute?.find((a) => a.name === name);
    if (node.opType === "MatMul") {
      const w = this.#weight(node.input?.[1], 2);
      if (!w) return [node];
      const [k, n] = w.dims;
      if (this.dtype === "q4") return [this.#matMulNBits(node, transpose(w.values, k), k, n)];
      const q = int8Columns(w.values, k);
      return this.#dequantized(node, w.dims, q.values, q.scales, 1);
    }
    if (node.opType === "Gemm") {
      const plain = [attr("alpha")?.f, attr("beta")?.f].every((v) => v === undefined || v === 1) &&
        !Number(attr("transA")?.i ?? 0);
      const w = plain ? this.#weight(node.input?.[1], 2) : undefined;
      if (!w) return [node];
      const transB = Number(attr("transB")?.i ?? 0) === 1;
      const [n, k] = transB ? w.dims : [w.dims[1], w.dims[0]];
      if (this.dtype === "q4") {
        const nBits = this.#matMulNBits(
          { ...node, output: [`${node.output![0]}_matmul`] },
          transB ? w.values : transpose(w.values, k),
          k,
          n,
        );
        const bias = node.input?.[2];
        if (!bias) return [{ ...nBits, output: node.output }];
        return [nBits, {
          opType: "Add",
          name: `${node.name}_bias`,
          input: [nBits.output![0], bias],
          output: node.output,
        }];
      }
      const q = transB ? int8Rows(w.values, n) : int8Columns(w.values, k);
      return this.#dequantized(node, w.dims, q.values, q.scales, transB ? 0 : 1);
    }
    if (node.opType === "Conv" && this.convs) {
      const w = this.#weight(node.input?.[1], 4);
      if (!w) return [node];
      if (this.dtype === "q4" && w.values.length % Q4_BLOCK === 0) return this.#q4Kernel(node, w);
      const q = int8Rows(w.values, w.dims[0]);
      return this.#dequantized(node, w.dims, q.values, q.scales, 0);
    }
    return [node];
  }

  #add(name: string, dims: number[], dataType: number, bytes: Uint8Array): string {
    this.#added.push({ init: { name, dims, dataType }, bytes });
    return name;
  }

  /** `node` reading its weight (input 1) as int8 `values` through a `DequantizeLinear`. */
  #dequantized(node: Node, dims: number[], values: Int8Array, scales: Float32Array, axis: number) {
    const weight = node.input![1];
    const dequantize: Node = {
      opType: "DequantizeLinear",
      name: `${node.name}_dequantize`,
      input: [
        this.#add(weight, dims, DType.int8, new Uint8Array(values.buffer)),
        this.#add(`${weight}_scale`, [scales.length], DType.float32, bytesOf(scales)),
      ],
      output: [`${weight}_dequantized`],
      attribute: [{ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: axis }],
    };
    return [dequantize, {
      ...node,
      input: node.input!.map((x, i) => i === 1 ? dequantize.output![0] : x),
    }];
  }

  /** `x · wᵀ` for `w` `[n, k]` as `MatMulNBits`, named as the converter names it. */
  #matMulNBits(node: Node, w: Float32Array, k: number, n: number): Node {
    const q = q4Blocks(w, n);
    const weight = node.input![1];
    this.#contrib = true;
    const int = (name: string, i: number) => ({
      name,
      type: onnx.AttributeProto.AttributeType.INT,
      i,
    });
    return {
      opType: "MatMulNBits",
      domain: "com.microsoft",
      name: (node.name ?? "").replace(/\/(MatMul|Gemm)(_\d+)?$/, "/MatMulNBits$2"),
      input: [
        node.input![0],
        this.#add(`${weight}_q4`, [n, q.blocks, Q4_BLOCK / 2], DType.uint8, q.packed),
        this.#add(`${weight}_scales`, [n * q.blocks], DType.float32, bytesOf(q.scales)),
      ],
      output: node.output,
      attribute: [
        int("K", k),
        int("N", n),
        int("bits", 4),
        int("block_size", Q4_BLOCK),
        int("accuracy_level", Q4_ACCURACY_LEVEL),
      ],
    };
  }

  /** A conv kernel in 4-bit blocks behind ONNX Runtime's `DequantizeLinear`, as the builder's. */
  #q4Kernel(node: Node, w: { dims: number[]; values: Float32Array }): Node[] {
    const q = q4Blocks(w.values, 1);
    const weight = node.input![1];
    this.#contrib = true;
    const dequantize: Node = {
      opType: "DequantizeLinear",
      domain: "com.microsoft",
      name: `${node.name}_dequantize`,
      input: [
        this.#add(weight, [q.blocks, Q4_BLOCK], DType.uint4, q.packed),
        this.#add(`${weight}_scale`, [q.blocks], DType.float32, bytesOf(q.scales)),
        this.#add(
          `${weight}_zero_point`,
          [q.blocks],
          DType.uint4,
          new Uint8Array(Math.ceil(q.blocks / 2)).fill(0x88),
        ),
      ],
      output: [`${weight}_dequantized`],
      attribute: [{ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
    };
    const shape = this.#add(
      `${weight}_shape`,
      [4],
      DType.int64,
      new Uint8Array(BigInt64Array.from(w.dims.map(BigInt)).buffer),
    );
    const reshape: Node = {
      opType: "Reshape",
      name: `${node.name}_kernel`,
      input: [dequantize.output![0], shape],
      output: [`${weight}_kernel`],
    };
    return [dequantize, reshape, {
      ...node,
      input: node.input!.map((x, i) => i === 1 ? reshape.output![0] : x),
    }];
  }
}

function bytesOf(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}
