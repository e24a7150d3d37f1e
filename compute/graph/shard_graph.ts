/**
 * Splitting an ONNX graph into consecutive ranges of its nodes, each a model of its own: a range
 * takes the graph inputs it reads and the tensors earlier ranges made that it or a later range
 * reads, and gives those on. A transformer splits between its blocks: the cut in each window of
 * nodes that fits the size is placed where the fewest tensors cross it.
 *
 * @module
 */
import pkg from "onnx-proto";
import { formatBytes } from "../backends/backend.ts";

type Model = pkg.onnx.IModelProto;
type Graph = pkg.onnx.IGraphProto;
type Node = pkg.onnx.INodeProto;
type TensorProto = pkg.onnx.ITensorProto;
type ValueInfo = pkg.onnx.IValueInfoProto;
const DataType = pkg.onnx.TensorProto.DataType;

/** One range of a split graph. */
export interface GraphShard {
  /** The range as a model: the original's opsets, its nodes, the initializers they read. */
  model: Model;
  /** Its inputs: graph inputs and tensors made by earlier shards. */
  inputs: string[];
  /** Its outputs: graph outputs and tensors later shards read. */
  outputs: string[];
  /** Bytes of the initializers it holds. */
  weightBytes: number;
}

/** A graph that cannot be split into shards of the size asked, with the figures. */
export class ShardTooLargeError extends Error {
  override name = "ShardTooLargeError";
}

const ELEMENT_BYTES: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.UINT16]: 2,
  [DataType.INT16]: 2,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.BOOL]: 1,
  [DataType.FLOAT16]: 2,
  [DataType.DOUBLE]: 8,
  [DataType.UINT32]: 4,
  [DataType.UINT64]: 8,
  [DataType.BFLOAT16]: 2,
};

/** Bytes an initializer holds, inline or in external data. */
export function initializerBytes(t: TensorProto): number {
  const length = t.externalData?.find((e) => e.key === "length")?.value;
  if (length) return Number(length);
  if (t.rawData?.length) return t.rawData.length;
  const count = (t.dims ?? []).reduce<number>((n, d) => n * Number(d), 1);
  return count * (ELEMENT_BYTES[t.dataType ?? 0] ?? 4);
}

/** Every tensor name a node reads, its subgraphs' (If, Loop) included. */
function nodeReads(node: Node): string[] {
  const names = (node.input ?? []).filter((n) => n !== "");
  for (const a of node.attribute ?? []) {
    for (const g of [a.g, ...(a.graphs ?? [])]) {
      for (const inner of g?.node ?? []) names.push(...nodeReads(inner));
    }
  }
  return names;
}

/** Element types of the outputs of operators that do not give the type of their first input. */
function outputType(node: Node, types: Map<string, number>, index: number): number | undefined {
  const attr = (name: string) => node.attribute?.find((a) => a.name === name);
  const input = (i: number) => types.get(node.input?.[i] ?? "");
  switch (node.opType) {
    case "Cast":
      return Number(attr("to")?.i ?? 0);
    case "CastLike":
      return input(1);
    case "Shape":
    case "Size":
    case "NonZero":
    case "ArgMax":
    case "ArgMin":
      return DataType.INT64;
    case "Equal":
    case "Less":
    case "LessOrEqual":
    case "Greater":
    case "GreaterOrEqual":
    case "Not":
    case "And":
    case "Or":
    case "Xor":
    case "IsNaN":
    case "IsInf":
      return DataType.BOOL;
    case "Constant":
      return attr("value")?.t?.dataType ??
        (attr("value_int") || attr("value_ints") ? DataType.INT64 : DataType.FLOAT);
    case "ConstantOfShape":
      return attr("value")?.t?.dataType ?? DataType.FLOAT;
    case "Where":
      return input(1);
    case "DequantizeLinear":
    case "GatherBlockQuantized":
      return input(node.opType === "DequantizeLinear" ? 1 : 2);
    case "QuantizeLinear":
      return input(2) ?? DataType.UINT8;
    case "TopK":
      return index === 1 ? DataType.INT64 : input(0);
    case "Gather":
    case "GatherElements":
    case "GatherND":
      return input(0);
    default:
      return input(0);
  }
}

/** Element type of every tensor of `graph`: declared where it is, propagated where not. */
function elementTypes(graph: Graph): Map<string, number> {
  const types = new Map<string, number>();
  for (const t of graph.initializer ?? []) types.set(t.name ?? "", t.dataType ?? 0);
  for (const v of [...graph.input ?? [], ...graph.valueInfo ?? [], ...graph.output ?? []]) {
    const elem = v.type?.tensorType?.elemType;
    if (elem) types.set(v.name ?? "", elem);
  }
  for (const node of graph.node ?? []) {
    (node.output ?? []).forEach((name, i) => {
      if (name === "" || types.has(name)) return;
      const type = outputType(node, types, i);
      if (type) types.set(name, type);
    });
  }
  return types;
}

/** A value info for a tensor crossing a cut: its element type, its shape left free. */
function crossingInfo(name: string, types: Map<string, number>): ValueInfo {
  const elemType = types.get(name);
  if (!elemType) {
    throw new Error(`cannot cut the graph after tensor ${name}: its element type is unknown`);
  }
  return { name, type: { tensorType: { elemType } } };
}

/**
 * Where to cut `graph`'s nodes so that no range holds more than `maxBytes` of initializers: the
 * start index of each range after the first. Within each window that fits, the cut goes where
 * the fewest tensors cross, the latest such place of the window's second half when it has one (so
 * ranges stay near the size); a node whose own weights exceed `maxBytes` makes
 * {@linkcode ShardTooLargeError}.
 */
export function planCuts(graph: Graph, maxBytes: number): number[] {
  const nodes = graph.node ?? [];
  const sizes = new Map<string, number>();
  for (const t of graph.initializer ?? []) sizes.set(t.name ?? "", initializerBytes(t));
  const reads = nodes.map(nodeReads);
  // crossing[p]: how many tensors made before node p are read at p or later (or are outputs).
  const madeAt = new Map<string, number>();
  nodes.forEach((n, i) => n.output?.forEach((o) => o && madeAt.set(o, i)));
  const lastRead = new Map<string, number>();
  reads.forEach((names, i) => names.forEach((n) => madeAt.has(n) && lastRead.set(n, i)));
  for (const o of graph.output ?? []) {
    if (madeAt.has(o.name ?? "")) lastRead.set(o.name!, nodes.length);
  }
  const delta = new Array<number>(nodes.length + 2).fill(0);
  for (const [name, last] of lastRead) {
    delta[madeAt.get(name)! + 1]++;
    delta[last + 1]--;
  }
  const crossing: number[] = [];
  delta.reduce((sum, d, i) => (crossing[i] = sum + d), 0);

  const cuts: number[] = [];
  let start = 0;
  while (start < nodes.length) {
    const held = new Set<string>();
    let bytes = 0;
    const filled: number[] = []; // filled[k]: bytes of nodes start..start+k
    let end = start;
    for (; end < nodes.length; end++) {
      let added = 0;
      for (const n of reads[end]) {
        if (sizes.has(n) && !held.has(n)) added += sizes.get(n)!;
      }
      if (bytes + added > maxBytes) {
        if (end === start) {
          throw new ShardTooLargeError(
            `node ${nodes[end].name || nodes[end].opType} alone holds ${
              formatBytes(added)
            } of weights, more than the shard size of ${formatBytes(maxBytes)}`,
          );
        }
        break;
      }
      for (const n of reads[end]) if (sizes.has(n)) held.add(n);
      bytes += added;
      filled.push(bytes);
    }
    if (end === nodes.length) break;
    // Cut candidates: start+1 .. end (a cut at p puts nodes start..p-1 in this range). A cut
    // before `end` is only worth it when the next range, from the cut, can take node `end` too:
    // otherwise it would stop there again, and the nodes between would make a range of their own.
    const half = filled.findIndex((b) => b >= maxBytes / 2);
    const tail = new Set<string>();
    let tailBytes = 0;
    let best = end;
    for (let p = end; p > start + Math.max(half, 0); p--) {
      for (const n of reads[p]) {
        if (sizes.has(n) && !tail.has(n)) (tail.add(n), tailBytes += sizes.get(n)!);
      }
      if (p < end && tailBytes > maxBytes) break;
      if (crossing[p] < crossing[best]) best = p;
    }
    cuts.push(best);
    start = best;
  }
  return cuts;
}

/** Bytes of all of `graph`'s initializers. */
export function graphWeightBytes(graph: Graph): number {
  return (graph.initializer ?? []).reduce((sum, t) => sum + initializerBytes(t), 0);
}

/** `model` cut into consecutive ranges of nodes (see {@linkcode planCuts}); one when it fits. */
export function splitModel(model: Model, maxBytes: number): GraphShard[] {
  const graph = model.graph ?? {};
  const nodes = graph.node ?? [];
  const bounds = [0, ...planCuts(graph, maxBytes), nodes.length];
  const types = elementTypes(graph);
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const graphInputs = new Map((graph.input ?? []).map((v) => [v.name ?? "", v]));
  const graphOutputs = new Map((graph.output ?? []).map((v) => [v.name ?? "", v]));
  const ranges = bounds.slice(1).map((end, i) => nodes.slice(bounds[i], end));
  const rangeReads = ranges.map((r) => new Set(r.flatMap(nodeReads)));
  const madeAnywhere = new Set(nodes.flatMap((n) => n.output ?? []));
  return ranges.map((range, i) => {
    const made = new Set(range.flatMap((n) => n.output ?? []).filter((o) => o));
    const reads = rangeReads[i];
    // Names only a subgraph makes for itself are neither graph inputs nor made by a node here.
    const inputs = [...reads].filter((n) =>
      !made.has(n) && (graphInputs.has(n) || madeAnywhere.has(n)) && !initializers.has(n)
    );
    const laterReads = new Set(rangeReads.slice(i + 1).flatMap((s) => [...s]));
    const outputs = [...made].filter((n) => graphOutputs.has(n) || laterReads.has(n));
    const held = (graph.initializer ?? []).filter((t) => reads.has(t.name ?? ""));
    return {
      model: {
        ...model,
        graph: {
          name: `${graph.name ?? "graph"}_shard${i}`,
          node: range,
          initializer: held,
          input: inputs.map((n) => graphInputs.get(n) ?? crossingInfo(n, types)),
          output: outputs.map((n) => graphOutputs.get(n) ?? crossingInfo(n, types)),
        },
      },
      inputs,
      outputs,
      weightBytes: held.reduce((sum, t) => sum + initializerBytes(t), 0),
    };
  });
}
