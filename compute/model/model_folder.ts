/**
 * The diffusers/Optimum ONNX folder layout: `model_index.json` names the pipeline class and its
 * components; each component folder holds `model.onnx` and, for large graphs, `model.onnx_data`.
 *
 * @module
 */
import type { Backend, Session } from "../backends/backend.ts";
import { BackendUnavailableError, ModelLoadError } from "../errors.ts";
import { exists, readJsonFile } from "./files.ts";

/** The parts of `model_index.json` this library reads. */
export interface ModelIndex {
  _class_name: string;
  [component: string]: unknown;
}

/** Reads `model_index.json`, naming what was expected if it is absent or malformed. */
export async function readModelIndex(dir: string): Promise<ModelIndex> {
  if (!(await exists(dir))) throw new ModelLoadError(`Cannot load ${dir}: no such model folder`);
  const path = `${dir}/model_index.json`;
  if (!(await exists(path))) {
    throw new ModelLoadError(
      `Cannot load ${path}: file not found (expected a diffusers/Optimum ONNX export: model_index.json, text_encoder/, unet/ or transformer/, vae_decoder/, tokenizer/, scheduler/)`,
    );
  }
  const index = await readJsonFile<ModelIndex>(path);
  if (typeof index?._class_name !== "string") {
    throw new ModelLoadError(
      `Cannot load ${path}: missing "_class_name" (the diffusers pipeline class)`,
    );
  }
  return index;
}

/**
 * Opens `<dir>/<component>/model.onnx` (with its `model.onnx_data` when present) on `backend`.
 * A missing or unreadable graph becomes a {@linkcode ModelLoadError} naming the file.
 */
export async function openSession(
  backend: Backend,
  dir: string,
  component: string,
): Promise<Session> {
  const modelPath = `${dir}/${component}/model.onnx`;
  const label = `${component}/model.onnx`;
  if (!(await exists(modelPath))) {
    throw new ModelLoadError(
      `Cannot load ${label}: file not found in ${dir} (expected an ONNX graph)`,
    );
  }
  const dataPath = `${modelPath}_data`;
  try {
    return await backend.createSession(modelPath, {
      externalDataPath: (await exists(dataPath)) ? dataPath : undefined,
    });
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw e;
    const reason = (e as Error).message.replace(/\s+/g, " ").trim();
    throw new ModelLoadError(
      `Cannot load ${label} from ${dir}: not a loadable ONNX graph (${reason})`,
    );
  }
}
