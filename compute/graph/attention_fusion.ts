/**
 * A load-time rewrite of exported attention into ONNX Runtime's fused `com.microsoft`
 * `MultiHeadAttention`, whose CPU kernel works block by block (flash attention) instead of writing
 * the `[batch, heads, queries, keys]` score tensor: at SD-1.5's 64² latents that tensor is 1.07 GB
 * per copy, and the unfused graph holds two (scores and probabilities).
 *
 * Exporters write scaled dot-product attention as
 *
 * ```
 * q, k, v: [B, S, H·d]  (the to_q / to_k / to_v projections)
 * Q = Transpose₀₂₁₃(Reshape(q, [B, S, H, d]))                    likewise V
 * Kᵀ = Transpose₀₁₃₂(Transpose₀₂₁₃(Reshape(k, [B, L, H, d])))      or Transpose₀₂₃₁(Reshape(k, …))
 * P = Softmax(MatMul(Q, Kᵀ) · scale)      (the scale may also sit on Q and on Kᵀ, or be a Div)
 * out = Reshape(Transpose₀₂₁₃(MatMul(P, V)), [B, S, H·d])
 * ```
 *
 * with the reshape shapes either constants or built from `Shape`/`Gather`/`Concat` (TorchScript
 * with dynamic axes). Each such pattern whose scale, heads and head size are constants, and whose
 * intermediate tensors nothing else reads, becomes one `MultiHeadAttention(q, k, v)` node with
 * `num_heads` H and the same `scale`; the nodes left without readers are removed. Anything else (a
 * mask added to the scores, a computed scale) is left as it is.
 *
 * @module
 */
import pkg from "onnx-proto";

const { onnx } = pkg;
type Node = pkg.onnx.INodeProto;
type Model = pkg.onnx.IModelProto;

/** The domain of ONNX Runtime's contrib operators. */
export const MS_DOMAIN = "com.microsoft";

/** One attention found by {@linkcode fuseAttention}. */
export interface FusedAttention {
  /** The name of the `MultiHeadAttention` node that replaced it. */
  name: string;
  heads: number;
  /** The scale of the scores; NaN: 1/√(head size), computed from shapes in the graph. */
  scale: number;
}

/**
 * Rewrites every recognised attention in `model` (in place) and returns what it fused; adds the
 * `com.microsoft` opset import when it fused anything.
 */
export function fuseAttention(model: Model): FusedAttention[] {
  const graph = model.graph;
  if (!graph?.node) return [];
  const ctx = new GraphIndex(graph);
  const fused: FusedAttention[] = [];
  for (const softmax of graph.node.filter((n) => n.opType === "Softmax")) {
    const match = matchAttention(ctx, softmax);
    if (!match) continue;
    const name = `${match.scope}MultiHeadAttention_${fused.length}`;
    ctx.replace(match.core, {
      opType: "MultiHeadAttention",
      domain: MS_DOMAIN,
      name,
      input: [match.q, match.k, match.v],
      output: [match.output],
      attribute: [
        { name: "num_heads", type: onnx.AttributeProto.AttributeType.INT, i: match.heads },
        // Without the attribute the operator uses 1/√(head size), as the graph computed it.
        ...Number.isNaN(match.scale)
          ? []
          : [{ name: "scale", type: onnx.AttributeProto.AttributeType.FLOAT, f: match.scale }],
      ],
    });
    fused.push({ name, heads: match.heads, scale: match.scale });
  }
  if (fused.length === 0) return fused;
  ctx.commit();
  const imports = model.opsetImport ?? (model.opsetImport = []);
  if (!imports.some((o) => o.domain === MS_DOMAIN)) imports.push({ domain: MS_DOMAIN, version: 1 });
  return fused;
}

interface AttentionMatch {
  q: string;
  k: string;
  v: string;
  output: string;
  heads: number;
  scale: number;
  /** The scope of the score MatMul (`/down_blocks.0/…/attn1/`), to name the fused node. */
  scope: string;
  /** The nodes between q/k/v's head split and the output reshape, all replaced. */
  core: Node[];
}

/** Matches the pattern of the module comment around one `Softmax`. */
function matchAttention(ctx: GraphIndex, softmax: Node): AttentionMatch | undefined {
  const axis = Number(attr(softmax, "axis")?.i ?? -1);
  if (axis !== -1 && axis !== 3) return undefined;
  const core: Node[] = [softmax];
  const factors: Factor[] = [];
  /** Peels a scaling node off `name` (recording its factor): what it scales. */
  const unscaled = (name: string) => {
    const node = ctx.only(name, core);
    const factor = scalarFactor(ctx, node);
    if (!factor) return name;
    core.push(node!);
    factors.push(factor);
    return factor.other;
  };
  // Scores: MatMul(Q, Kᵀ), possibly scaled after the product, or Q and Kᵀ scaled before it.
  const scores = ctx.only(unscaled(softmax.input![0]), core);
  if (scores?.opType !== "MatMul") return undefined;
  core.push(scores);
  const q = splitHeads(ctx, unscaled(scores.input![0]), core);
  const k = transposedHeads(ctx, unscaled(scores.input![1]), core);

  // P·V, merged back to [B, S, H·d].
  const av = ctx.soleReader(softmax.output![0]);
  if (av?.opType !== "MatMul" || av.input![0] !== softmax.output![0]) return undefined;
  core.push(av);
  const v = splitHeads(ctx, av.input![1], core);
  const merge = ctx.soleReader(av.output![0]);
  if (merge?.opType !== "Transpose" || !samePerm(merge, [0, 2, 1, 3])) return undefined;
  core.push(merge);
  const reshape = ctx.soleReader(merge.output![0]);
  if (reshape?.opType !== "Reshape") return undefined;
  core.push(reshape);

  if (!q || !k || !v || k.heads !== q.heads || v.heads !== q.heads) return undefined;
  if (!sameDim(q.headSize, k.headSize)) return undefined;
  const merged = ctx.shapeParts(reshape.input![1]);
  if (merged?.length !== 3 || !isMergedWidth(ctx, merged[2], v, [q.input, v.input])) {
    return undefined;
  }
  const scale = combinedScale(factors, q.headSize);
  if (scale === undefined) return undefined;
  // Every intermediate is read only inside the pattern (the last output is the result).
  if (!core.slice(0, -1).every((n) => n.output!.every((o) => ctx.readsOnlyIn(o, core)))) {
    return undefined;
  }
  const name = scores.name ?? "";
  return {
    q: q.input,
    k: k.input,
    v: v.input,
    output: reshape.output![0],
    heads: q.heads,
    scale,
    scope: name.slice(0, name.lastIndexOf("/") + 1),
    core,
  };
}

/** A dimension of a reshape target: a constant, or the tensor it is computed from. */
type Dim = { value: number } | { ref: string };

/** A scaling of the scores: a constant, or 1/√ of a computed value. */
type Factor = { other: string } & ({ value: number } | { inverseSqrtOf: string });

interface Heads {
  input: string;
  heads: number;
  headSize: Dim;
}

function sameDim(a: Dim, b: Dim): boolean {
  return "value" in a ? "value" in b && a.value === b.value : "ref" in b && a.ref === b.ref;
}

/**
 * The scale of the fused node: the product of the constant factors, or 1/√d when the only
 * factor is 1/√(the head size) computed from shapes (then `NaN`: the operator's own default).
 */
function combinedScale(factors: Factor[], headSize: Dim): number | undefined {
  let scale = 1;
  let computed = false;
  for (const f of factors) {
    if ("value" in f) scale *= f.value;
    else if (!computed && "ref" in headSize && f.inverseSqrtOf === headSize.ref) computed = true;
    else return undefined;
  }
  if (!computed) return scale;
  return scale === 1 ? NaN : undefined;
}

/**
 * Whether `dim`, the last of the merged output's shape, is `heads × headSize`: that constant, a
 * `Mul` of the computed head size by the head count, or the width of `q` or `v` read from its
 * shape (`Gather(Shape(x), 2)`).
 */
function isMergedWidth(ctx: GraphIndex, dim: Dim, heads: Heads, qv: string[]): boolean {
  const { headSize } = heads;
  if ("value" in dim) return "value" in headSize && dim.value === heads.heads * headSize.value;
  const node = ctx.producer(dim.ref);
  if (node?.opType === "Gather") {
    const shape = ctx.producer(node.input![0]);
    const axis = ctx.constant(node.input![1]);
    return shape?.opType === "Shape" && !shape.attribute?.length &&
      qv.includes(shape.input![0]) && axis?.length === 1 && (axis[0] === 2 || axis[0] === -1);
  }
  if (node?.opType !== "Mul" || !("ref" in headSize)) return false;
  const [a, b] = node.input!;
  return (ctx.base(a) === headSize.ref && ctx.constant(b)?.[0] === heads.heads) ||
    (ctx.base(b) === headSize.ref && ctx.constant(a)?.[0] === heads.heads);
}

/** `Transpose₀₂₁₃(Reshape(x, [B, S, H, d]))` → x, H, d. */
function splitHeads(ctx: GraphIndex, name: string, core: Node[]): Heads | undefined {
  const transpose = ctx.only(name, core);
  if (transpose?.opType !== "Transpose" || !samePerm(transpose, [0, 2, 1, 3])) return undefined;
  const reshape = ctx.only(transpose.input![0], core);
  const heads = reshapeToHeads(ctx, reshape);
  if (!heads) return undefined;
  core.push(transpose, reshape!);
  return heads;
}

/** Kᵀ as `Transpose₀₁₃₂(splitHeads(k))` or `Transpose₀₂₃₁(Reshape(k, [B, L, H, d]))`. */
function transposedHeads(ctx: GraphIndex, name: string, core: Node[]): Heads | undefined {
  const transpose = ctx.only(name, core);
  if (transpose?.opType !== "Transpose") return undefined;
  if (samePerm(transpose, [0, 1, 3, 2])) {
    const heads = splitHeads(ctx, transpose.input![0], core);
    if (heads) core.push(transpose);
    return heads;
  }
  if (!samePerm(transpose, [0, 2, 3, 1])) return undefined;
  const reshape = ctx.only(transpose.input![0], core);
  const heads = reshapeToHeads(ctx, reshape);
  if (heads) core.push(transpose, reshape!);
  return heads;
}

function reshapeToHeads(ctx: GraphIndex, reshape: Node | undefined): Heads | undefined {
  if (reshape?.opType !== "Reshape") return undefined;
  const dims = ctx.shapeParts(reshape.input![1]);
  if (dims?.length !== 4) return undefined;
  const [, , heads, headSize] = dims;
  if (!("value" in heads) || !(heads.value > 0)) return undefined;
  if ("value" in headSize && !(headSize.value > 0)) return undefined;
  return { input: reshape.input![0], heads: heads.value, headSize };
}

/**
 * A scaling node: `Mul` by a constant scalar or by 1/√x (`Pow(x, −0.5)`, `Reciprocal(Sqrt(x))`,
 * `Div(1, Sqrt(x))`), or `Div` by a constant or by √x.
 */
function scalarFactor(ctx: GraphIndex, node: Node | undefined): Factor | undefined {
  if (node?.opType !== "Mul" && node?.opType !== "Div") return undefined;
  const [a, b] = node.input!;
  if (node.opType === "Div") {
    const c = ctx.constant(b);
    if (c?.length === 1) return { other: a, value: 1 / c[0] };
    const root = ctx.sqrtOf(b);
    return root === undefined ? undefined : { other: a, inverseSqrtOf: root };
  }
  for (const [x, s] of [[a, b], [b, a]]) {
    const c = ctx.constant(s);
    if (c?.length === 1) return { other: x, value: c[0] };
    const inv = ctx.inverseSqrtOf(s);
    if (inv !== undefined) return { other: x, inverseSqrtOf: inv };
  }
  return undefined;
}

function attr(node: Node, name: string) {
  return node.attribute?.find((a) => a.name === name);
}

function samePerm(node: Node, perm: number[]): boolean {
  const got = (attr(node, "perm")?.ints ?? []).map(Number);
  return got.length === perm.length && got.every((p, i) => p === perm[i]);
}

/** Producers, readers and constants of one graph, and the edits of one fusion pass. */
class GraphIndex {
  readonly #graph: pkg.onnx.IGraphProto;
  readonly #producers = new Map<string, Node>();
  readonly #readers = new Map<string, Node[]>();
  readonly #inits = new Map<string, pkg.onnx.ITensorProto>();
  readonly #outputs: Set<string>;
  readonly #removed = new Set<Node>();
  readonly #added = new Map<Node, Node>();

  constructor(graph: pkg.onnx.IGraphProto) {
    this.#graph = graph;
    for (const t of graph.initializer ?? []) this.#inits.set(t.name ?? "", t);
    for (const node of graph.node ?? []) {
      for (const out of node.output ?? []) this.#producers.set(out, node);
      for (const input of node.input ?? []) {
        const list = this.#readers.get(input) ?? [];
        list.push(node);
        this.#readers.set(input, list);
      }
    }
    this.#outputs = new Set((graph.output ?? []).map((o) => o.name ?? ""));
  }

  producer(name: string): Node | undefined {
    return this.#producers.get(name);
  }

  /** The producer of `name`, unless a node already matched, a removed one or a graph output. */
  only(name: string, core: Node[]): Node | undefined {
    const node = this.#producers.get(name);
    if (!node || core.includes(node) || this.#removed.has(node) || this.#outputs.has(name)) {
      return undefined;
    }
    return node;
  }

  /** The one node reading `name`, if exactly one does and it is not a graph output. */
  soleReader(name: string): Node | undefined {
    const readers = this.#readers.get(name) ?? [];
    return readers.length === 1 && !this.#outputs.has(name) ? readers[0] : undefined;
  }

  readsOnlyIn(name: string, nodes: Node[]): boolean {
    if (this.#outputs.has(name)) return false;
    return (this.#readers.get(name) ?? []).every((n) => nodes.includes(n));
  }

  /** The values of a constant tensor (initializer or `Constant` node), as numbers. */
  constant(name: string): number[] | undefined {
    const init = this.#inits.get(name);
    if (init) return tensorValues(init);
    const node = this.#producers.get(name);
    if (node?.opType !== "Constant") return undefined;
    const a = node.attribute?.[0];
    if (a?.name === "value" && a.t) return tensorValues(a.t);
    if (a?.name === "value_float") return [a.f ?? 0];
    if (a?.name === "value_floats") return (a.floats ?? []).map(Number);
    if (a?.name === "value_int") return [Number(a.i ?? 0)];
    if (a?.name === "value_ints") return (a.ints ?? []).map(Number);
    return undefined;
  }

  /**
   * The target shape of a `Reshape`, a dimension per entry: a constant (0 and −1 keep their
   * Reshape meaning) or, in a `Concat` of parts, the value a part is computed from; undefined if
   * even the rank is unknown.
   */
  shapeParts(name: string): Dim[] | undefined {
    const values = this.constant(name);
    if (values) return values.map((value) => ({ value }));
    const node = this.#producers.get(name);
    if (node?.opType !== "Concat") return undefined;
    return (node.input ?? []).flatMap((part): Dim[] => {
      const c = this.constant(part) ?? this.constant(this.base(part));
      return c ? c.map((value) => ({ value })) : [{ ref: this.base(part) }];
    });
  }

  /** `name` without the `Cast`, `Unsqueeze` and `Squeeze` nodes in front of it. */
  base(name: string): string {
    for (;;) {
      const node = this.#producers.get(name);
      if (!node || !["Cast", "Unsqueeze", "Squeeze"].includes(node.opType ?? "")) return name;
      name = node.input![0];
    }
  }

  /** x when `name` is √x (`Sqrt(x)` or `Pow(x, 0.5)`), as its {@linkcode base}. */
  sqrtOf(name: string): string | undefined {
    const node = this.#producers.get(this.base(name));
    if (node?.opType === "Sqrt") return this.base(node.input![0]);
    if (node?.opType === "Pow" && this.constant(node.input![1])?.[0] === 0.5) {
      return this.base(node.input![0]);
    }
    return undefined;
  }

  /** x when `name` is 1/√x (`Pow(x, −0.5)`, `Reciprocal(√x)` or `Div(1, √x)`). */
  inverseSqrtOf(name: string): string | undefined {
    const node = this.#producers.get(this.base(name));
    if (node?.opType === "Pow" && this.constant(node.input![1])?.[0] === -0.5) {
      return this.base(node.input![0]);
    }
    if (node?.opType === "Reciprocal") return this.sqrtOf(node.input![0]);
    if (node?.opType === "Div" && this.constant(node.input![0])?.[0] === 1) {
      return this.sqrtOf(node.input![1]);
    }
    return undefined;
  }

  /** Replaces `nodes` by `node`, at the position of the last of them. */
  replace(nodes: Node[], node: Node): void {
    for (const n of nodes) this.#removed.add(n);
    this.#added.set(nodes[nodes.length - 1], node);
  }

  /**
   * Applies the replacements, then removes what they left unread (the head splits' shape
   * computations, constants) and the value infos of tensors that no longer exist.
   */
  commit(): void {
    const graph = this.#graph;
    // Reader counts after the replacements.
    const reads = new Map<string, number>();
    const count = (node: Node, by: number) => {
      for (const i of node.input ?? []) reads.set(i, (reads.get(i) ?? 0) + by);
    };
    const kept: Node[] = [];
    for (const node of graph.node!) {
      const replacement = this.#added.get(node);
      if (replacement) kept.push(replacement);
      else if (!this.#removed.has(node)) kept.push(node);
    }
    for (const node of kept) count(node, 1);
    // Walk up from the removed nodes' inputs, dropping producers nobody reads any more.
    const dead = new Set<Node>();
    const pending = [...this.#removed].flatMap((n) => n.input ?? []);
    while (pending.length > 0) {
      const name = pending.pop()!;
      const node = this.#producers.get(name);
      if (!node || dead.has(node) || this.#removed.has(node)) continue;
      const unread = (node.output ?? []).every((o) => !reads.get(o) && !this.#outputs.has(o));
      if (!unread) continue;
      dead.add(node);
      count(node, -1);
      pending.push(...(node.input ?? []));
    }
    graph.node = kept.filter((n) => !dead.has(n));
    const live = new Set<string>();
    for (const node of graph.node) {
      for (const name of [...(node.input ?? []), ...(node.output ?? [])]) live.add(name);
    }
    for (const o of this.#outputs) live.add(o);
    graph.initializer = (graph.initializer ?? []).filter((t) => live.has(t.name ?? ""));
    graph.valueInfo = (graph.valueInfo ?? []).filter((v) => live.has(v.name ?? ""));
  }
}

/** The numbers in a small constant tensor (float, double, int32 or int64; raw or typed fields). */
function tensorValues(t: pkg.onnx.ITensorProto): number[] | undefined {
  const T = onnx.TensorProto.DataType;
  const raw = t.rawData && t.rawData.length > 0
    ? new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength)
    : undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) return undefined;
  const n = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
  if (n > 16) return undefined;
  const read = (size: number, get: (at: number) => number) =>
    Array.from({ length: n }, (_, i) => get(i * size));
  switch (t.dataType) {
    case T.FLOAT:
      return raw ? read(4, (at) => raw.getFloat32(at, true)) : (t.floatData ?? []).map(Number);
    case T.DOUBLE:
      return raw ? read(8, (at) => raw.getFloat64(at, true)) : (t.doubleData ?? []).map(Number);
    case T.INT32:
      return raw ? read(4, (at) => raw.getInt32(at, true)) : (t.int32Data ?? []).map(Number);
    case T.INT64:
      return raw
        ? read(8, (at) => Number(raw.getBigInt64(at, true)))
        : (t.int64Data ?? []).map(Number);
    default:
      return undefined;
  }
}
