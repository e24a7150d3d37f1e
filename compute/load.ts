/**
 * `loadPipeline(dir, {device})`: model folder + device → a ready {@linkcode Pipeline}.
 *
 * @module
 */
import type { DeviceChoice } from "./backends/backend.ts";
import { selectBackend } from "./backends/device.ts";
import { ModelLoadError } from "./errors.ts";
import { readModelIndex } from "./model/model_folder.ts";
import type { Pipeline, PipelineDefaults } from "./pipelines/pipeline.ts";
import { QwenImagePipeline } from "./pipelines/qwen_image.ts";
import { StableDiffusionPipeline } from "./pipelines/stable_diffusion.ts";

/** Options of {@linkcode loadPipeline}. */
export interface LoadOptions {
  device?: DeviceChoice;
  /** Per-model defaults (e.g. from the registry) over those derived from the configs. */
  defaults?: Partial<PipelineDefaults>;
}

/** `model_index.json` class names → loader. Optimum and legacy diffusers ONNX names included. */
const FAMILIES: Record<string, (dir: string, options: LoadOptions) => Promise<Pipeline>> = {
  StableDiffusionPipeline: loadSd,
  ORTStableDiffusionPipeline: loadSd,
  OnnxStableDiffusionPipeline: loadSd,
  QwenImagePipeline: async (dir, options) =>
    await QwenImagePipeline.load(
      dir,
      await selectBackend(options.device ?? "auto"),
      options.defaults,
    ),
};

async function loadSd(dir: string, options: LoadOptions): Promise<Pipeline> {
  return await StableDiffusionPipeline.load(
    dir,
    await selectBackend(options.device ?? "auto"),
    options.defaults,
  );
}

/** The pipeline classes {@linkcode loadPipeline} can run. */
export const SUPPORTED_PIPELINES: readonly string[] = Object.keys(FAMILIES);

/** Loads the model folder `dir` on the chosen device. */
export async function loadPipeline(dir: string, options: LoadOptions = {}): Promise<Pipeline> {
  const index = await readModelIndex(dir);
  const load = FAMILIES[index._class_name];
  if (!load) {
    throw new ModelLoadError(
      `Cannot load ${dir}/model_index.json: pipeline class '${index._class_name}' is not supported (supported: ${
        SUPPORTED_PIPELINES.join(", ")
      })`,
    );
  }
  return await load(dir, options);
}
