/**
 * `loadPipeline(dir, {device})`: model folder + device → a ready {@linkcode Pipeline}.
 *
 * @module
 */
import type { BackendSettings, DeviceChoice } from "./backends/backend.ts";
import { selectBackend } from "./backends/device.ts";
import { ModelLoadError } from "./errors.ts";
import { DEFAULT_LORA_LIMITS, type LoraLimits } from "./limits.ts";
import { LoraPipeline } from "./lora/lora_pipeline.ts";
import { executionPrepare, type ExecutionSettings, offloadNeeded } from "./model/execution.ts";
import {
  folderGraphs,
  type GraphSource,
  preparedGraphs,
  readModelIndex,
} from "./model/model_folder.ts";
import {
  detectPublishedLayout,
  guardStaticShapes,
  presentPublished,
  providerGraphs,
  type PublishedGraph,
} from "./model/published_layouts.ts";
import { FAMILIES, familyOf } from "./families/mod.ts";
import type { PipelineDefaults } from "./pipelines/pipeline.ts";
import type { VaeDecodeSettings } from "./pipelines/vae_decode.ts";

/** Options of {@linkcode loadPipeline}. */
export interface LoadOptions {
  device?: DeviceChoice;
  /** Per-model defaults (e.g. from the registry) over those derived from the configs. */
  defaults?: Partial<PipelineDefaults>;
  /** Bounds on per-request LoRA adapters and their cache. */
  lora?: Partial<LoraLimits>;
  /** Threads and graph rewrites of the backend. */
  backend?: BackendSettings;
  /**
   * Decode in tiles (vLLM-Omni's `--vae-use-tiling`); a batch is decoded one image at a time unless
   * `slicing` is false (`--vae-use-slicing` is the default).
   */
  vae?: VaeDecodeSettings;
  /** The denoiser's calls (`--cfg-mode`, `--cfg-parallel-size`) and `--enable-cpu-offload`. */
  execution?: ExecutionSettings;
  /**
   * Which variant of a published export with several (`webnn/sdxl-turbo`'s `q4f16` or
   * `qdq_q4f16`); absent, the layout's default, said through `onNotice`.
   */
  variant?: string;
  /** Told what was chosen for the caller (a published layout's default variant). */
  onNotice?: (message: string) => void;
}

/** The pipeline classes {@linkcode loadPipeline} can run. */
export const SUPPORTED_PIPELINES: readonly string[] = FAMILIES.flatMap((f) => f.pipelineClasses);

/**
 * Loads the model folder `dir` on the chosen device, ready to apply each request's LoRA adapters
 * (see {@linkcode LoraPipeline}).
 */
export async function loadPipeline(
  published: string,
  options: LoadOptions = {},
): Promise<LoraPipeline> {
  // A published export without model_index.json is presented as a diffusers folder.
  const layout = await detectPublishedLayout(published, options.variant);
  if (layout?.variant && layout.chosen === "default" && layout.available.length > 1) {
    options.onNotice?.(
      `${published} holds ${layout.layout.repo}'s variants ${
        layout.available.join(", ")
      }: serving ${layout.variant}, the default (choose with --variant)`,
    );
  }
  const presented = layout && await presentPublished(published, layout);
  if (!presented) return await loadFolder(published, options);
  const cleanup = () => Deno.remove(presented.dir, { recursive: true });
  try {
    return await loadFolder(presented.dir, options, presented.graphs, cleanup);
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function loadFolder(
  dir: string,
  options: LoadOptions,
  published?: ReadonlyMap<string, PublishedGraph>,
  cleanup?: () => Promise<void>,
): Promise<LoraPipeline> {
  const index = await readModelIndex(dir);
  const family = familyOf(index._class_name);
  if (!family) {
    throw new ModelLoadError(
      `Cannot load ${dir}/model_index.json: pipeline class '${index._class_name}' is not supported (supported: ${
        SUPPORTED_PIPELINES.join(", ")
      })`,
    );
  }
  const backend = await selectBackend(options.device ?? "auto", options.backend);
  const execution = options.execution ?? {};
  const offload = execution.offload === "auto" || execution.offload === undefined
    ? await offloadNeeded(dir)
    : execution.offload;
  if (offload && execution.offload !== true) {
    options.onNotice?.(
      "the text encoders and the denoiser together exceed half of this machine's memory: they take turns in memory, each closed while the other runs (--enable-cpu-offload)",
    );
  }
  const threads = options.backend?.threads ?? navigator.hardwareConcurrency;
  const graphs = preparedGraphs(
    providerGraphs(folderGraphs(dir, backend), published),
    executionPrepare(execution, backend, threads, offload),
  );
  const load = async (source: GraphSource) =>
    guardStaticShapes(await family.load(source, options.defaults, options.vae), graphs.opened);
  const base = await load(graphs);
  const pipeline = new LoraPipeline(base, graphs, family.denoiser, load, {
    ...DEFAULT_LORA_LIMITS,
    ...options.lora,
  });
  if (cleanup) {
    const release = pipeline.release.bind(pipeline);
    pipeline.release = () => release().finally(cleanup);
  }
  return pipeline;
}
