/**
 * Published ONNX exports served as they are published, beside our own (Optimum) layout:
 *
 * - `microsoft/sd-turbo-webnn`: `text_encoder/model_layernorm.onnx`, `unet/model_layernorm.onnx`,
 *   `vae_decoder/model.onnx`, static shapes, float16 IO;
 * - `schmuell/sd-turbo-ort-web`: `text_encoder/`, `unet/`, `vae_decoder/` each with `model.onnx`;
 * - `webnn/sdxl-turbo`: `onnx/*_model_<variant>.onnx` (4-bit `MatMulNBits`, float16 IO);
 * - `webnn/Z-Image-Turbo`: `onnx/*_model_q4f16.onnx` with external data, a transformer output
 *   without a batch axis ({@linkcode withBatchAxis});
 * - `onnxruntime/sd-turbo`: a diffusers folder whose graphs use operators only ONNX Runtime's
 *   CUDA provider implements; `NhwcConv` is rewritten at load ({@linkcode providerGraphs}).
 *
 * None of the first four carries the tokenizer or scheduler config its demo brings along. Such a
 * folder is {@linkcode presentPublished presented} to the pipelines as a diffusers folder: a
 * temporary folder of the configs the export lacks (those of the model it was exported from) and
 * OpenAI's CLIP tokenizer where the model uses it, with links to the published graphs under the
 * names the pipelines open. Static shapes become per-request checks
 * ({@linkcode guardStaticShapes}), so a request the graphs cannot take is refused with the size
 * they fix instead of failing inside ONNX Runtime.
 *
 * @module
 */
import { BackendUnavailableError, InvalidInputError, ModelLoadError } from "../errors.ts";
import { decodeModel, encodeModel } from "../graph/model_bytes.ts";
import {
  missingKernel,
  PROVIDER_ONLY_OPS,
  rewriteProviderOps,
  REWRITTEN_OPS,
} from "../graph/provider_ops.ts";
import {
  type Backend,
  type OpenOptions,
  readFloat32,
  type Session,
  type Tensor,
} from "../backends/backend.ts";
import type {
  BatchOutcome,
  GenerateOptions,
  GenerateResult,
  Pipeline,
} from "../pipelines/pipeline.ts";
import { clipTokenizerFiles } from "../tokenizers/clip_vocabulary.ts";
import type { Family } from "../families/family.ts";
import { STABLE_DIFFUSION } from "../families/stable_diffusion/mod.ts";
import { STABLE_DIFFUSION_XL } from "../families/stable_diffusion_xl/mod.ts";
import { Z_IMAGE } from "../families/z_image/mod.ts";
import { exists } from "./files.ts";
import { type FolderGraphs, graphPath } from "./model_folder.ts";

/** A published layout: what it is called, and where its graphs are. */
export interface PublishedLayout {
  /** The hub repo that publishes it. */
  repo: string;
  /** The family it is served by, as a folder of its diffusers pipeline class. */
  family: Family;
  /** component → path of its graph inside the folder; `{variant}` stands for the variant. */
  graphs: Readonly<Record<string, string>>;
  /** The variants published, the default first; absent when there is one. */
  variants?: readonly string[];
  /** The config files the export lacks (path → JSON), from the model it was exported from. */
  configs: Readonly<Record<string, unknown>>;
  /** The CLIP tokenizer folders the export lacks, with each one's pad token. */
  tokenizers: Readonly<Record<string, string>>;
  /**
   * A tokenizer folder the export lacks and this library cannot supply (its vocabulary is not
   * vendored here): it must be in the folder, and is downloaded when the repo has it.
   */
  ownTokenizer?: { folder: string; what: string };
}

/** A folder found to be in a published layout, with the variant chosen. */
export interface DetectedLayout {
  layout: PublishedLayout;
  /** component → path of its graph inside the folder, for the chosen variant. */
  graphs: Record<string, string>;
  /** The chosen variant, if the layout has several; `available` lists those present. */
  variant?: string;
  available: string[];
  /** Why this variant: asked for, or the default. */
  chosen: "asked" | "default";
}

const EULER_NOISE = {
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  interpolation_type: "linear",
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  steps_offset: 1,
  timestep_spacing: "trailing",
  trained_betas: null,
};

/** SD-Turbo's configs (stabilityai/sd-turbo). */
const SD_TURBO_CONFIGS = {
  "scheduler/scheduler_config.json": {
    _class_name: "EulerDiscreteScheduler",
    ...EULER_NOISE,
    use_karras_sigmas: false,
  },
};

/** The layouts without `model_index.json`, most specific first. */
const LAYOUTS: readonly PublishedLayout[] = [
  {
    repo: "microsoft/sd-turbo-webnn",
    family: STABLE_DIFFUSION,
    graphs: {
      text_encoder: "text_encoder/model_layernorm.onnx",
      unet: "unet/model_layernorm.onnx",
      vae_decoder: "vae_decoder/model.onnx",
    },
    configs: SD_TURBO_CONFIGS,
    tokenizers: { tokenizer: "!" },
  },
  {
    repo: "webnn/sdxl-turbo",
    family: STABLE_DIFFUSION_XL,
    graphs: {
      text_encoder: "onnx/text_encoder_model_{variant}.onnx",
      text_encoder_2: "onnx/text_encoder_2_model_{variant}.onnx",
      unet: "onnx/unet_model_{variant}.onnx",
      vae_decoder: "onnx/vae_decoder_model_{variant}.onnx",
    },
    variants: ["q4f16", "qdq_q4f16"],
    // stabilityai/sdxl-turbo's scheduler, UNet sample size and VAE scaling.
    configs: {
      "scheduler/scheduler_config.json": {
        _class_name: "EulerAncestralDiscreteScheduler",
        ...EULER_NOISE,
      },
      "unet/config.json": { sample_size: 64 },
      "vae_decoder/config.json": { latent_channels: 4, scaling_factor: 0.13025 },
    },
    tokenizers: { tokenizer: "<|endoftext|>", tokenizer_2: "!" },
  },
  {
    repo: "webnn/Z-Image-Turbo",
    family: Z_IMAGE,
    graphs: {
      text_encoder: "onnx/text_encoder_model_{variant}.onnx",
      transformer: "onnx/transformer_model_{variant}.onnx",
      vae_decoder: "onnx/vae_decoder_model_f16.onnx",
    },
    variants: ["q4f16"],
    // Tongyi-MAI/Z-Image-Turbo's scheduler and VAE (the FLUX autoencoder).
    configs: {
      "scheduler/scheduler_config.json": {
        _class_name: "FlowMatchEulerDiscreteScheduler",
        num_train_timesteps: 1000,
        shift: 3.0,
        use_dynamic_shifting: false,
      },
      "vae_decoder/config.json": {
        latent_channels: 16,
        scaling_factor: 0.3611,
        shift_factor: 0.1159,
      },
    },
    tokenizers: {},
    ownTokenizer: {
      folder: "tokenizer",
      what:
        "Qwen3's tokenizer.json and tokenizer_config.json (Tongyi-MAI/Z-Image-Turbo's tokenizer/; the WebNN demo brings its own)",
    },
  },
  {
    repo: "schmuell/sd-turbo-ort-web",
    family: STABLE_DIFFUSION,
    graphs: {
      text_encoder: "text_encoder/model.onnx",
      unet: "unet/model.onnx",
      vae_decoder: "vae_decoder/model.onnx",
    },
    configs: SD_TURBO_CONFIGS,
    tokenizers: { tokenizer: "!" },
  },
];

/** The hub repos whose layouts {@linkcode detectPublishedLayout} knows. */
export const PUBLISHED_REPOS: readonly string[] = LAYOUTS.map((l) => l.repo);

/**
 * The published layout of a file listing (`has` says whether a path is there), or undefined when
 * it matches none, or is a diffusers or Optimum folder (`model_index.json` and
 * `<component>/model.onnx`: served as it is). A layout's own file names are recognised with or
 * without `model_index.json` beside them. Of a
 * layout's variants, `variant` when given (a {@linkcode ModelLoadError} naming those there when
 * it is not), else the first present in the layout's order (the default).
 */
export async function matchPublishedLayout(
  has: (path: string) => boolean | Promise<boolean>,
  where: string,
  variant?: string,
): Promise<DetectedLayout | undefined> {
  const diffusers = await has("model_index.json");
  for (const layout of LAYOUTS) {
    // With model_index.json, graphs named as diffusers names them are a diffusers folder.
    const standard = Object.entries(layout.graphs).every(([c, p]) => p === `${c}/model.onnx`);
    if (diffusers && standard) continue;
    const available: string[] = [];
    for (const v of layout.variants ?? [""]) {
      const paths = Object.values(layout.graphs).map((p) => p.replace("{variant}", v));
      if ((await Promise.all(paths.map(has))).every(Boolean)) available.push(v);
    }
    if (available.length === 0) continue;
    if (!layout.variants) {
      return { layout, graphs: { ...layout.graphs }, available, chosen: "default" };
    }
    if (variant !== undefined && !available.includes(variant)) {
      throw new ModelLoadError(
        `${where} holds no variant '${variant}' of ${layout.repo} (it has ${available.join(", ")})`,
      );
    }
    const chosen = variant ?? available[0];
    return {
      layout,
      variant: chosen,
      available,
      chosen: variant === undefined ? "default" : "asked",
      graphs: Object.fromEntries(
        Object.entries(layout.graphs).map(([c, p]) => [c, p.replace("{variant}", chosen)]),
      ),
    };
  }
  return undefined;
}

/** {@linkcode matchPublishedLayout} on folder `dir`. */
export function detectPublishedLayout(
  dir: string,
  variant?: string,
): Promise<DetectedLayout | undefined> {
  return matchPublishedLayout((p) => exists(`${dir}/${p}`), dir, variant);
}

/**
 * Of a hub repo's files, those serving it in a published layout reads: the chosen variant's
 * graphs and their external data (`<graph>_data`, `<graph>.data`), graphs last, so that a
 * snapshot holding every graph is complete. Undefined when the repo is in no such layout.
 */
export async function publishedDownload(
  paths: readonly string[],
  repoId: string,
  variant?: string,
): Promise<{ detected: DetectedLayout; files: string[] } | undefined> {
  const listed = new Set(paths);
  const detected = await matchPublishedLayout((p) => listed.has(p), `'${repoId}'`, variant);
  if (!detected) return undefined;
  const graphs = Object.values(detected.graphs);
  const data = graphs.flatMap((g) => [`${g}_data`, `${g}.data`]).filter((p) => listed.has(p));
  const own = detected.layout.ownTokenizer?.folder;
  const tokenizer = own ? paths.filter((p) => p.startsWith(`${own}/`)) : [];
  return { detected, files: [...tokenizer, ...data, ...graphs] };
}

/**
 * A diffusers folder standing for `dir` in the `detected` layout: `model_index.json`, the configs
 * and CLIP tokenizers (OpenAI's vocabulary) the export lacks, and each component's graph, with
 * the other files of its folder (external data), linked under the names the pipelines open.
 * Written to a new temporary folder, which the caller removes when done.
 */
export async function presentPublished(
  dir: string,
  detected: DetectedLayout,
): Promise<{ dir: string; graphs: Map<string, PublishedGraph> }> {
  const { layout } = detected;
  const out = await Deno.makeTempDir({ prefix: "denoise-published-" });
  const write = async (path: string, bytes: Uint8Array) => {
    await Deno.mkdir(`${out}/${path.split("/").slice(0, -1).join("/")}`, { recursive: true });
    await Deno.writeFile(`${out}/${path}`, bytes);
  };
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + "\n");
  await write(
    "model_index.json",
    json({
      _class_name: layout.family.pipelineClasses[0],
      _published_layout: layout.repo,
      ...detected.variant && { _variant: detected.variant },
    }),
  );
  for (const [path, config] of Object.entries(layout.configs)) await write(path, json(config));
  for (const [folder, pad] of Object.entries(layout.tokenizers)) {
    for (const [name, bytes] of clipTokenizerFiles(pad)) await write(`${folder}/${name}`, bytes);
  }
  const source = await Deno.realPath(dir);
  const own = layout.ownTokenizer;
  if (own) {
    if (!(await exists(`${source}/${own.folder}`))) {
      await Deno.remove(out, { recursive: true });
      throw new ModelLoadError(
        `Cannot load ${dir} (${layout.repo}'s layout): it has no ${own.folder}/; add ${own.what} there`,
      );
    }
    await Deno.symlink(`${source}/${own.folder}`, `${out}/${own.folder}`);
  }
  const graphs = new Map<string, PublishedGraph>();
  for (const [component, path] of Object.entries(detected.graphs)) {
    await Deno.mkdir(`${out}/${component}`, { recursive: true });
    graphs.set(component, await linkGraph(`${source}/${path}`, `${out}/${component}`));
  }
  return { dir: out, graphs };
}

/** A published graph: its real path, and its external-data file (`<graph>_data`, `<graph>.data`). */
export interface PublishedGraph {
  path: string;
  data?: string;
}

/**
 * Links graph `path` into `folder` as `model.onnx`, and its external data under the name the
 * graph gives it, for the readers of the presented folder (edits' `vae_encoder` check, LoRA).
 */
async function linkGraph(path: string, folder: string): Promise<PublishedGraph> {
  await Deno.symlink(path, `${folder}/model.onnx`);
  for (const data of [`${path}_data`, `${path}.data`]) {
    if (await exists(data)) {
      await Deno.symlink(data, `${folder}/${data.slice(data.lastIndexOf("/") + 1)}`);
      return { path, data };
    }
  }
  return { path };
}

/**
 * Opens a published graph on `backend`: from its real path natively (ONNX Runtime then reads its
 * external data beside it), from memory with its external data by name on the web backends (which
 * have no file system).
 */
async function openPublished(
  backend: Backend,
  graph: PublishedGraph,
  label: string,
  options?: OpenOptions,
) {
  try {
    if (backend.device === "cpu") return await backend.createSession({ path: graph.path }, options);
    const externalData = new Map<string, Uint8Array>();
    if (graph.data) {
      externalData.set(
        graph.data.slice(graph.data.lastIndexOf("/") + 1),
        await Deno.readFile(graph.data),
      );
    }
    return await backend.createSession(
      { bytes: await Deno.readFile(graph.path), externalData },
      options,
    );
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw e;
    const reason = (e as Error).message.replace(/\s+/g, " ").trim();
    throw new ModelLoadError(
      `Cannot load ${label} from ${graph.path}: not a loadable ONNX graph (${reason})`,
    );
  }
}

/**
 * `base`'s graphs, with the operators the backend lacks handled at load: a graph that ONNX
 * Runtime refuses for want of a kernel is rewritten when the operator is one of
 * {@linkcode REWRITTEN_OPS} (then opened from memory), else refused with a message naming the
 * operator and the provider that has it.
 */
export function providerGraphs(
  base: FolderGraphs,
  published: ReadonlyMap<string, PublishedGraph> = new Map(),
): FolderGraphs {
  const opened = new Map<string, Session>();
  return {
    dir: base.dir,
    backend: base.backend,
    opened,
    async open(component, options) {
      let session: Session;
      const graph = published.get(component);
      try {
        session = graph
          ? await openPublished(base.backend, graph, `${component}/model.onnx`, options)
          : await base.open(component, options);
      } catch (e) {
        const op = e instanceof ModelLoadError ? missingKernel(e.message) : undefined;
        if (!op) throw e;
        session = await openRewritten(base, component, op);
      }
      session = withBatchAxis(session, base.backend);
      opened.set(component, session);
      return session;
    },
  };
}

/**
 * A Z-Image transformer whose `unified_results` has no batch axis (`webnn/Z-Image-Turbo`'s, which
 * runs one sample a call) as one with it: a batch runs row by row and the outputs are stacked.
 * Any other session comes back as it is.
 */
export function withBatchAxis(session: Session, backend: Backend): Session {
  const output = session.outputs.find((t) => t.name === "unified_results");
  const input = session.inputs.find((t) => t.name === "hidden_states");
  if (!output || !input || output.shape.length !== input.shape.length - 1) return session;
  return {
    inputs: session.inputs,
    outputs: session.outputs.map((t) =>
      t === output ? { ...t, shape: [input.shape[0], ...t.shape] } : t
    ),
    async run(feeds) {
      const rows = feeds.hidden_states.dims[0];
      const parts: Float32Array[] = [];
      let dims: readonly number[] = [];
      for (let row = 0; row < rows; row++) {
        const own: Record<string, Tensor> = {};
        for (const [name, tensor] of Object.entries(feeds)) {
          own[name] = await rowOf(backend, tensor, row);
        }
        const out = await session.run(own);
        dims = out.unified_results.dims;
        parts.push(await readFloat32(out.unified_results));
        for (const t of Object.values(out)) t.dispose();
      }
      const stacked = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.forEach((p, i) => stacked.set(p, i * p.length));
      return { unified_results: backend.tensor("float32", stacked, [rows, ...dims]) };
    },
    release: () => session.release(),
  };
}

/** Row `row` of a float32 tensor's first axis, keeping that axis (length 1). */
async function rowOf(backend: Backend, tensor: Tensor, row: number): Promise<Tensor> {
  const [rows, ...rest] = tensor.dims;
  if (rows === 1) return tensor;
  const data = await readFloat32(tensor);
  const size = data.length / rows;
  return backend.tensor("float32", data.slice(row * size, (row + 1) * size), [1, ...rest]);
}

async function openRewritten(base: FolderGraphs, component: string, op: string): Promise<Session> {
  const label = `${component}/model.onnx`;
  const device = base.backend.device;
  const provider = PROVIDER_ONLY_OPS[op];
  if (!REWRITTEN_OPS.includes(op)) {
    throw new ModelLoadError(
      `Cannot load ${label} on ${device}: its operator ${op} has no kernel in this backend` +
        (provider
          ? `; ONNX Runtime implements it in its ${provider} execution provider only (this export is tuned for that provider: use an export with standard operators)`
          : ""),
    );
  }
  const path = graphPath(base.dir, component);
  const model = decodeModel(await Deno.readFile(path));
  if (!model) throw new ModelLoadError(`Cannot load ${label}: not an ONNX model`);
  rewriteProviderOps(model);
  const folder = path.slice(0, path.lastIndexOf("/"));
  const externalData = new Map<string, Uint8Array>();
  for (const init of model.graph?.initializer ?? []) {
    const location = init.externalData?.find((e) => e.key === "location")?.value;
    if (location && !externalData.has(location)) {
      externalData.set(location, await Deno.readFile(`${folder}/${location}`));
    }
  }
  try {
    return await base.backend.createSession({ bytes: encodeModel(model), externalData });
  } catch (e) {
    const reason = (e as Error).message.replace(/\s+/g, " ").trim();
    const still = missingKernel(reason);
    throw new ModelLoadError(
      still
        ? `Cannot load ${label} on ${device}: its operator ${still} has no kernel in this backend${
          PROVIDER_ONLY_OPS[still]
            ? `; ONNX Runtime implements it in its ${
              PROVIDER_ONLY_OPS[still]
            } execution provider only`
            : ""
        }`
        : `Cannot load ${label} after rewriting ${op} for ${device}: ${reason}`,
    );
  }
}

/** Sizes a graph fixes, and which graph input fixes them. */
interface FixedShapes {
  /** Rows the denoiser and text encoder take per call. */
  rows?: { value: number; source: string };
  /** Image size in pixels. */
  size?: { width: number; height: number; source: string };
}

const describe = (label: string, s: Session, name: string) =>
  `${label} ${name} [${s.inputs.find((t) => t.name === name)?.shape.join(",")}]`;

/** What the opened UNet and text encoder fix: their batch, and the latent size. */
function fixedShapes(opened: ReadonlyMap<string, Session>): FixedShapes {
  const fixed: FixedShapes = {};
  for (const [component, input] of [["unet", "sample"], ["text_encoder", "input_ids"]]) {
    const session = opened.get(component);
    const shape = session?.inputs.find((t) => t.name === input)?.shape;
    if (!session || !shape) continue;
    const source = describe(`${component}/model.onnx`, session, input);
    if (
      typeof shape[0] === "number" && shape[0] > 0 && (fixed.rows?.value ?? Infinity) > shape[0]
    ) {
      fixed.rows = { value: shape[0], source };
    }
    if (component === "unet" && typeof shape[2] === "number" && typeof shape[3] === "number") {
      fixed.size = { width: shape[3] * 8, height: shape[2] * 8, source };
    }
  }
  return fixed;
}

/**
 * `pipeline` refusing, with an {@linkcode InvalidInputError} naming the fixed size, the requests
 * that its graphs' static shapes cannot take (another image size; more rows than the fixed batch,
 * from `n` or from guidance's doubled batch), and never batching requests beyond that batch.
 * `pipeline` itself when its graphs fix nothing.
 */
export function guardStaticShapes(
  pipeline: Pipeline,
  opened: ReadonlyMap<string, Session>,
): Pipeline {
  const fixed = fixedShapes(opened);
  if (!fixed.rows && !fixed.size) return pipeline;
  return new StaticShapePipeline(pipeline, fixed);
}

class StaticShapePipeline implements Pipeline {
  #calls = 0;
  constructor(readonly inner: Pipeline, readonly fixed: FixedShapes) {}

  get family() {
    return this.inner.family;
  }
  get device() {
    return this.inner.device;
  }
  get defaults() {
    return this.inner.defaults;
  }
  get sizeMultiple() {
    return this.inner.sizeMultiple;
  }
  get maxEditImages() {
    return this.inner.maxEditImages;
  }

  #check(o: GenerateOptions): void {
    const d = this.inner.defaults;
    const width = o.width ?? d.width, height = o.height ?? d.height;
    const { size, rows } = this.fixed;
    if (size && (width !== size.width || height !== size.height)) {
      throw Object.assign(
        new InvalidInputError(
          `size must be ${size.width}x${size.height} for this model, got ${width}x${height}: its graphs have static shapes (${size.source})`,
        ),
        { param: "size" },
      );
    }
    if (!rows) return;
    const n = o.n ?? 1;
    const guided = (o.guidanceScale ?? d.guidanceScale) > 1;
    if (n * (guided ? 2 : 1) <= rows.value) return;
    throw Object.assign(
      new InvalidInputError(
        n > rows.value || !guided
          ? `n must be at most ${rows.value} for this model, got ${n}: its graphs have a fixed batch (${rows.source})`
          : `guidance_scale > 1 runs ${
            2 * n
          } rows (negative and prompt), but this model's graphs take ${rows.value} (${rows.source}); use guidance_scale <= 1`,
      ),
      { param: n > rows.value || !guided ? "n" : "guidance_scale" },
    );
  }

  generate(options: GenerateOptions): Promise<GenerateResult> {
    this.#check(options);
    return this.inner.generate(options);
  }

  batchKey(options: GenerateOptions): string {
    this.#check(options);
    // A fixed batch takes no batch-mates: every request runs on its own.
    const alone = this.fixed.rows ? `/${this.#calls++}` : "";
    return this.inner.batchKey(options) + alone;
  }

  generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]> {
    batch.forEach((o) => this.#check(o));
    return this.inner.generateBatch(batch);
  }

  release(): Promise<void> {
    return this.inner.release();
  }
}
