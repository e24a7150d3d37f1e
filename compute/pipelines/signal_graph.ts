/**
 * The step cache's signal (./step_cache.ts) as its own cheap session: the sub-graph of a denoiser
 * that computes one intermediate tensor, cut out on first use by walking back from that tensor to
 * the graph inputs, with only the initializers it reads (external data read and inlined, so a
 * multi-GiB `model.onnx_data` is never loaded for it).
 *
 * The tensor is found by the torch-export node names our graphs and diffusers/Optimum exports
 * share, per backend and family (each family's `Family.stepCacheSignal` says where):
 * - `tea_cache`: the first block's timestep-modulated input;
 * - `cache_dit`: the first block's output residual, the last residual branch of that block.
 *
 * A graph without such a node (a foreign export with other names) has no signal: the caller runs
 * every step in full and says so. The sub-graph is cut from the model folder's file, so with LoRA
 * adapters the signal reads the base weights: it only decides when to cache, and what a cached step
 * reuses is the adapted denoiser's own output.
 *
 * @module
 */
import pkg from "onnx-proto";
import type { Backend, Session, Tensor } from "../backends/backend.ts";
import { readFloat32 } from "../backends/backend.ts";
import { decodeModel, encodeModel } from "../graph/model_bytes.ts";
import { FAMILIES } from "../families/mod.ts";
import type { CacheBackend } from "./step_cache.ts";

type Model = pkg.onnx.IModelProto;

/**
 * Where a signal tensor is, by the module whose node names start with `prefix`: the first tensor
 * entering it (`input`), the last one it makes (`output`), or what the first `op` node reading
 * one of its tensors makes (`consumer`: the unnamed `Add` after a named `Conv`).
 */
export type Locator =
  | { prefix: string; take: "input"; op?: never }
  | { prefix: string; take: "output"; op?: never }
  | { prefix: string; take: "consumer"; op: string };

/**
 * Every family's locators, tried in order (no graph has the modules of two families; families
 * sharing a denoiser share its locators, listed once).
 */
const LOCATORS = (cache: Exclude<CacheBackend, "none">): Locator[] => [
  ...new Set(FAMILIES.flatMap((f) => f.stepCacheSignal[cache])),
];

/** A cut-out sub-graph: its serialized model, the tensor it computes and the inputs it reads. */
export interface SignalSubgraph {
  bytes: Uint8Array;
  tensor: string;
  inputs: string[];
  /** Nodes kept, of all the graph's nodes. */
  nodes: number;
  ofNodes: number;
}

/**
 * The sub-graph of `model` that computes `backend`'s signal, or undefined when no node of the
 * graph has a name the signal is looked up by. `externalData` reads the named external-data
 * file's bytes `[offset, offset + length)`.
 */
export function cutSignal(
  model: Model,
  backend: Exclude<CacheBackend, "none">,
  externalData?: (location: string, offset: number, length: number) => Uint8Array,
): SignalSubgraph | undefined {
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const producer = new Map<string, pkg.onnx.INodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const inModule = (n: pkg.onnx.INodeProto, prefix: string) => (n.name ?? "").startsWith(prefix);
  let tensor: string | undefined;
  for (const locator of LOCATORS(backend)) {
    const { prefix } = locator;
    const own = nodes.filter((n) => inModule(n, prefix));
    if (locator.take === "input") {
      // The first tensor one of its nodes reads that none of them makes (Constants read nothing).
      tensor = own.flatMap((n) => n.input ?? []).find((t) => {
        const from = producer.get(t);
        return t !== "" && !(from && inModule(from, prefix));
      });
    } else if (locator.take === "output") {
      tensor = own.at(-1)?.output?.[0];
    } else {
      const { op } = locator;
      const made = new Set(own.flatMap((n) => n.output ?? []));
      tensor = nodes.find((n) =>
        n.opType === op && !inModule(n, prefix) && (n.input ?? []).some((t) => made.has(t))
      )?.output?.[0];
    }
    if (tensor) break;
  }
  if (!tensor) return undefined;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name!));
  const kept = new Set<pkg.onnx.INodeProto>();
  const usedInits = new Set<string>();
  const usedInputs = new Set<string>();
  const stack = [tensor];
  const seen = new Set<string>();
  while (stack.length) {
    const name = stack.pop()!;
    if (!name || seen.has(name)) continue;
    seen.add(name);
    if (inits.has(name)) usedInits.add(name);
    else if (graphInputs.has(name)) usedInputs.add(name);
    const n = producer.get(name);
    if (n && !kept.has(n)) {
      kept.add(n);
      stack.push(...(n.input ?? []));
      // Subgraph attributes (If/Loop bodies) may read outer tensors too.
      for (const a of n.attribute ?? []) if (a.g) stack.push(...outerNames(a.g));
    }
  }
  const initializer = [...usedInits].map((name) => inlined(inits.get(name)!, externalData));
  const elemType = valueType(graph, tensor) ?? 1;
  const sub: Model = {
    ...model,
    graph: {
      name: `${graph.name ?? "graph"}_signal`,
      node: nodes.filter((n) => kept.has(n)),
      initializer,
      input: (graph.input ?? []).filter((i) => usedInputs.has(i.name!)),
      output: [{ name: tensor, type: { tensorType: { elemType } } }],
    },
  };
  return {
    bytes: encodeModel(sub),
    tensor,
    inputs: [...usedInputs],
    nodes: kept.size,
    ofNodes: nodes.length,
  };
}

/** Tensor names a subgraph reads from outside itself (a superset is fine: unknown names drop). */
function outerNames(g: pkg.onnx.IGraphProto): string[] {
  return (g.node ?? []).flatMap((n) => n.input ?? []);
}

/** `tensor`'s element type where the graph declares it. */
function valueType(graph: pkg.onnx.IGraphProto, tensor: string): number | undefined {
  const info = [...(graph.valueInfo ?? []), ...(graph.output ?? [])].find((v) => v.name === tensor);
  return info?.type?.tensorType?.elemType ?? undefined;
}

/** An initializer with its external data read in. */
function inlined(
  t: pkg.onnx.ITensorProto,
  read?: (location: string, offset: number, length: number) => Uint8Array,
): pkg.onnx.ITensorProto {
  const entries = new Map((t.externalData ?? []).map((e) => [e.key, e.value ?? ""]));
  if (!entries.has("location")) return t;
  if (!read) throw new Error(`initializer ${t.name} is stored outside the graph`);
  const bytes = read(
    entries.get("location")!,
    Number(entries.get("offset") ?? 0),
    Number(entries.get("length") ?? -1),
  );
  return { ...t, externalData: [], dataLocation: 0, rawData: bytes };
}

/** A denoiser's signal as a session of its own. */
export class SignalGraph {
  private constructor(
    readonly backend: Exclude<CacheBackend, "none">,
    readonly cut: SignalSubgraph,
    private readonly session: Session,
  ) {}

  /**
   * The signal session of the graph at `path` (with `model.onnx_data` beside it when present),
   * or undefined when the graph has no node the signal is looked up by.
   */
  static async open(
    backend: Backend,
    path: string,
    cache: Exclude<CacheBackend, "none">,
  ): Promise<SignalGraph | undefined> {
    const model = decodeModel(await Deno.readFile(path));
    if (!model) return undefined;
    const dir = path.slice(0, path.lastIndexOf("/") + 1);
    const files = new Map<string, Deno.FsFile>();
    try {
      const cut = cutSignal(model, cache, (location, offset, length) => {
        let file = files.get(location);
        if (!file) files.set(location, file = Deno.openSync(`${dir}${location}`));
        const size = length >= 0 ? length : file.statSync().size - offset;
        const bytes = new Uint8Array(size);
        file.seekSync(offset, Deno.SeekMode.Start);
        for (let read = 0; read < size;) read += file.readSync(bytes.subarray(read)) ?? size;
        return bytes;
      });
      if (!cut) return undefined;
      return new SignalGraph(cache, cut, await backend.createSession({ bytes: cut.bytes }));
    } finally {
      for (const file of files.values()) file.close();
    }
  }

  /** The signal for the denoiser's `feeds` (those the sub-graph reads are passed on). */
  async run(feeds: Record<string, Tensor>): Promise<Float32Array> {
    const out = await this.session.run(
      Object.fromEntries(this.cut.inputs.map((name) => [name, feeds[name]])),
    );
    const tensor = out[this.cut.tensor];
    const data = await readFloat32(tensor);
    tensor.dispose();
    return data;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * A pipeline's signal sessions, opened on first use per backend: undefined (remembered) when the
 * graph has none, after telling `onMissing` once.
 */
export class SignalGraphs {
  readonly #opened = new Map<string, Promise<SignalGraph | undefined>>();

  constructor(
    private readonly backend: Backend,
    private readonly path: string,
    private readonly onMissing: (message: string) => void = (m) => console.warn(m),
  ) {}

  get(cache: Exclude<CacheBackend, "none">): Promise<SignalGraph | undefined> {
    let graph = this.#opened.get(cache);
    if (!graph) {
      graph = SignalGraph.open(this.backend, this.path, cache).then((g) => {
        if (!g) {
          this.onMissing(
            `step cache ${cache}: ${this.path} has none of the nodes its signal is read from; every step runs in full`,
          );
        }
        return g;
      });
      this.#opened.set(cache, graph);
    }
    return graph;
  }

  async release(): Promise<void> {
    for (const g of this.#opened.values()) await (await g.catch(() => undefined))?.release();
  }
}
