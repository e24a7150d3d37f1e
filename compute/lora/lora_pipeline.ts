/**
 * Per-request LoRA over any pipeline. A request's adapter set (adapters and scales) selects a
 * variant: the same pipeline with the adapted graphs (UNet or transformer, text encoders) opened
 * from merged copies of their bytes, and every other graph shared with the base. The base is never
 * changed, so requests with other adapters, or none, run beside it correctly.
 *
 * Variants are cached, least recently used first out, within a count and a byte budget; one in use
 * by a running batch is never evicted. The adapter set is part of the batch key, so a batch never
 * mixes adapter sets.
 *
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import type { Family } from "../families/family.ts";
import { DEFAULT_LORA_LIMITS, type LoraLimits, MAX_LORA_SCALE } from "../limits.ts";
import { exists } from "../model/files.ts";
import {
  type FolderGraphs,
  graphPath,
  type GraphSource,
  patchedGraphs,
} from "../model/model_folder.ts";
import { only } from "../pipelines/denoising_loop.ts";
import type {
  BatchOutcome,
  GenerateOptions,
  GenerateResult,
  LoraSpec,
  Pipeline,
  PipelineDefaults,
} from "../pipelines/pipeline.ts";
import type { LoraComponent } from "./adapter.ts";
import { readAdapter } from "./files.ts";
import { type GraphWeights, indexGraphWeights } from "./graph_weights.ts";
import { LowRankProduct } from "./low_rank_product.ts";
import { applyPlan, planMerge, type ScaledAdapter } from "./merge.ts";

interface Variant {
  key: string;
  pipeline: Pipeline;
  bytes: number;
  users: number;
}

/** Which of a folder's graphs a component names. */
const GRAPHS: Record<Exclude<LoraComponent, "denoiser">, string> = {
  text_encoder: "text_encoder",
  text_encoder_2: "text_encoder_2",
};

/** The adapter set of a request, canonical: one entry per adapter, no zero scales, sorted. */
export function canonicalLora(lora: readonly LoraSpec[] = []): LoraSpec[] {
  const byId = new Map<string, LoraSpec>();
  for (const spec of lora) {
    if (!Number.isFinite(spec.scale) || Math.abs(spec.scale) > MAX_LORA_SCALE) {
      throw new InvalidInputError(
        `LoRA scale must be a finite number between -${MAX_LORA_SCALE} and ${MAX_LORA_SCALE}, got ${spec.scale}`,
      );
    }
    const seen = byId.get(spec.id);
    byId.set(spec.id, seen ? { ...seen, scale: seen.scale + spec.scale } : spec);
  }
  return [...byId.values()].filter((s) => s.scale !== 0).sort((a, b) =>
    a.id < b.id ? -1 : a.id > b.id ? 1 : 0
  );
}

const keyOf = (set: readonly LoraSpec[]) => set.map((s) => `${s.id}@${s.scale}`).join(",");

/** A pipeline that applies each request's LoRA adapters (see the module doc). */
export class LoraPipeline implements Pipeline {
  readonly #base: Pipeline;
  readonly #graphs: FolderGraphs;
  readonly #reopen: (graphs: GraphSource) => Promise<Pipeline>;
  readonly #limits: LoraLimits;
  readonly #variants = new Map<string, Variant>();
  readonly #pending = new Map<string, Promise<Variant>>();
  readonly #indexes = new Map<string, GraphWeights>();
  /** Each request's canonical set, by its `lora` list: worked out once, at its batch key. */
  readonly #canonical = new WeakMap<readonly LoraSpec[], LoraSpec[]>();
  readonly #denoiser: string;
  #product?: LowRankProduct;

  /**
   * `reopen` loads the same pipeline class from other graphs; `graphs` is the source the base
   * was loaded from (its sessions are lent to the variants); `denoiser` is its family's denoiser
   * folder ({@linkcode Family.denoiser}), which adapters' UNet and transformer layers patch.
   */
  constructor(
    base: Pipeline,
    graphs: FolderGraphs,
    denoiser: Family["denoiser"],
    reopen: (graphs: GraphSource) => Promise<Pipeline>,
    limits: LoraLimits = DEFAULT_LORA_LIMITS,
  ) {
    this.#base = base;
    this.#graphs = graphs;
    this.#denoiser = denoiser;
    this.#reopen = reopen;
    this.#limits = limits;
  }

  get family(): string {
    return this.#base.family;
  }
  get device() {
    return this.#base.device;
  }
  get defaults(): PipelineDefaults {
    return this.#base.defaults;
  }
  get sizeMultiple(): number {
    return this.#base.sizeMultiple;
  }
  get maxEditImages(): number {
    return this.#base.maxEditImages;
  }

  /** Merged variants in the cache and their bytes. */
  get cached(): { variants: number; bytes: number } {
    const all = [...this.#variants.values()];
    return { variants: all.length, bytes: all.reduce((s, v) => s + v.bytes, 0) };
  }

  generate(options: GenerateOptions): Promise<GenerateResult> {
    return this.generateBatch([options]).then(only);
  }

  batchKey(options: GenerateOptions): string {
    return `${keyOf(this.#canonicalOf(options.lora))}|${this.#base.batchKey(options)}`;
  }

  #canonicalOf(lora: readonly LoraSpec[] | undefined): LoraSpec[] {
    if (!lora) return [];
    let set = this.#canonical.get(lora);
    if (!set) this.#canonical.set(lora, set = canonicalLora(lora));
    return set;
  }

  async generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]> {
    let set: LoraSpec[];
    try {
      set = this.#canonicalOf(batch[0]?.lora);
    } catch (error) {
      return batch.map(() => ({ ok: false, error: error as Error }));
    }
    if (set.length === 0) return await this.#base.generateBatch(batch);
    const started = performance.now();
    let variant: Variant;
    try {
      variant = await this.#acquire(set);
    } catch (error) {
      return batch.map(() => ({ ok: false, error: error as Error }));
    }
    const loraMs = performance.now() - started;
    try {
      const outcomes = await variant.pipeline.generateBatch(batch);
      for (const o of outcomes) if (o.ok) o.result.timings.loraMs = loraMs;
      return outcomes;
    } finally {
      variant.users--;
      await this.#evict();
    }
  }

  async release(): Promise<void> {
    for (const v of this.#variants.values()) await v.pipeline.release();
    this.#variants.clear();
    await this.#product?.release();
    await this.#base.release();
  }

  async #acquire(set: readonly LoraSpec[]): Promise<Variant> {
    const key = keyOf(set);
    const cached = this.#variants.get(key);
    if (cached) {
      // Most recently used last.
      this.#variants.delete(key);
      this.#variants.set(key, cached);
      cached.users++;
      return cached;
    }
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#merge(key, set).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    const variant = await pending;
    if (!this.#variants.has(key)) this.#variants.set(key, variant);
    variant.users++;
    await this.#evict();
    return variant;
  }

  /** Drops least recently used idle variants while the cache is over a bound. */
  async #evict(): Promise<void> {
    const over = () => {
      const { variants, bytes } = this.cached;
      return variants > this.#limits.maxVariants || bytes > this.#limits.cacheBytes;
    };
    for (const [key, v] of this.#variants) {
      if (!over()) return;
      if (v.users > 0) continue;
      this.#variants.delete(key);
      await v.pipeline.release();
    }
  }

  /** Reads the adapters, merges them into copies of the graphs they adapt, opens the variant. */
  async #merge(key: string, set: readonly LoraSpec[]): Promise<Variant> {
    const adapters: ScaledAdapter[] = await Promise.all(set.map(async (spec) => ({
      adapter: await readAdapter(spec.files, this.#limits.maxFileBytes),
      scale: spec.scale,
    })));
    const components = new Set(adapters.flatMap((a) => a.adapter.layers.map((l) => l.component)));
    const graphs = new Map<LoraComponent, { name: string; bytes: Uint8Array }>();
    const indexes = new Map<LoraComponent, GraphWeights>();
    for (const component of components) {
      const name = component === "denoiser" ? this.#denoiser : GRAPHS[component];
      const path = graphPath(this.#graphs.dir, name);
      if (!(await exists(path))) continue; // its layers match nothing: planMerge says so
      const bytes = await Deno.readFile(path);
      let index = this.#indexes.get(name);
      if (!index) {
        index = indexGraphWeights(bytes, `${name}/model.onnx`);
        this.#indexes.set(name, index);
      }
      graphs.set(component, { name, bytes });
      indexes.set(component, index);
    }
    const plans = planMerge(adapters, indexes);
    const patched = new Map<string, { bytes: Uint8Array; externalData: Map<string, Uint8Array> }>();
    let size = 0;
    for (const [component, plan] of plans) {
      const { name, bytes } = graphs.get(component)!;
      const externalData = new Map<string, Uint8Array>();
      for (const file of indexes.get(component)!.externalFiles) {
        if (file.includes("/") || file.includes("\\") || file.startsWith(".")) {
          throw new InvalidInputError(`${name}/model.onnx names external data outside its folder`);
        }
        externalData.set(file, await Deno.readFile(`${this.#graphs.dir}/${name}/${file}`));
      }
      this.#product ??= await LowRankProduct.open(this.#graphs.backend);
      await applyPlan(plan, { model: bytes, external: externalData }, this.#product);
      patched.set(name, { bytes, externalData });
      size += bytes.length + [...externalData.values()].reduce((s, d) => s + d.length, 0);
    }
    const pipeline = await this.#reopen(patchedGraphs(this.#graphs, patched));
    return { key, pipeline, bytes: size, users: 0 };
  }
}
