/**
 * The diffusers/Optimum ONNX folder layout: `model_index.json` names the pipeline class and its
 * components; each component folder holds `model.onnx` and, for large graphs, `model.onnx_data`.
 *
 * @module
 */
import type { Backend, GraphInput, OpenOptions, Session } from "../backends/backend.ts";
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

/** Where a pipeline gets its graphs: a model folder on one backend. */
export interface GraphSource {
  readonly dir: string;
  readonly backend: Backend;
  /** Opens `<dir>/<component>/model.onnx`, or whatever stands in for it. */
  open(component: string, options?: OpenOptions): Promise<Session>;
}

/**
 * Makes the session a pipeline holds for `component` from a way to open it (once, or several
 * times: ../model/execution.ts's CFG calls and released text encoders).
 */
export type Prepare = (
  component: string,
  open: (options?: OpenOptions) => Promise<Session>,
) => Promise<Session>;

/** A folder's graphs, remembering the sessions it opened so variants can borrow them. */
export interface FolderGraphs extends GraphSource {
  readonly opened: ReadonlyMap<string, Session>;
  /** What {@linkcode preparedGraphs} applies, for the graphs a variant opens from its own bytes. */
  readonly prepare?: Prepare;
}

/** The graphs of model folder `dir`, opened from its files. */
export function folderGraphs(dir: string, backend: Backend): FolderGraphs {
  const opened = new Map<string, Session>();
  return {
    dir,
    backend,
    opened,
    async open(component, options) {
      const session = await openSession(backend, dir, component, options);
      opened.set(component, session);
      return session;
    },
  };
}

/** `base`'s graphs, each made by `prepare` (which may open it more than once, or later). */
export function preparedGraphs(base: FolderGraphs, prepare: Prepare): FolderGraphs {
  const opened = new Map<string, Session>();
  return {
    dir: base.dir,
    backend: base.backend,
    opened,
    prepare,
    async open(component) {
      const session = await prepare(component, (options) => base.open(component, options));
      opened.set(component, session);
      return session;
    },
  };
}

/**
 * `base`'s folder with the graphs in `patched` opened from their bytes instead (LoRA variants);
 * every other graph is `base`'s own session, lent: releasing it here does nothing.
 */
export function patchedGraphs(
  base: FolderGraphs,
  patched: ReadonlyMap<
    string,
    { bytes: Uint8Array; externalData: ReadonlyMap<string, Uint8Array> }
  >,
): GraphSource {
  return {
    dir: base.dir,
    backend: base.backend,
    async open(component) {
      const graph = patched.get(component);
      if (graph) {
        const open = (options?: OpenOptions) =>
          createSession(base.backend, graph, `${component}/model.onnx`, base.dir, options);
        return await (base.prepare ? base.prepare(component, open) : open());
      }
      const lent = base.opened.get(component);
      if (!lent) {
        throw new ModelLoadError(`${component}/model.onnx was not opened by the base model`);
      }
      return {
        inputs: lent.inputs,
        outputs: lent.outputs,
        run: (feeds) => lent.run(feeds),
        release: () => Promise.resolve(),
      };
    },
  };
}

/** `<dir>/<component>/model.onnx`. */
export function graphPath(dir: string, component: string): string {
  return `${dir}/${component}/model.onnx`;
}

/**
 * Opens `<dir>/<component>/model.onnx` (with its `model.onnx_data` when present) on `backend`.
 * A missing or unreadable graph becomes a {@linkcode ModelLoadError} naming the file.
 */
async function openSession(
  backend: Backend,
  dir: string,
  component: string,
  options?: OpenOptions,
): Promise<Session> {
  const modelPath = graphPath(dir, component);
  const label = `${component}/model.onnx`;
  if (!(await exists(modelPath))) {
    throw new ModelLoadError(
      `Cannot load ${label}: file not found in ${dir} (expected an ONNX graph)`,
    );
  }
  const dataPath = `${modelPath}_data`;
  return await createSession(
    backend,
    { path: modelPath, externalDataPath: (await exists(dataPath)) ? dataPath : undefined },
    label,
    dir,
    options,
  );
}

async function createSession(
  backend: Backend,
  graph: GraphInput,
  label: string,
  dir: string,
  options?: OpenOptions,
): Promise<Session> {
  try {
    return await backend.createSession(graph, options);
  } catch (e) {
    // A refusal with its own reason (a shard too large for --shard-size) keeps its message.
    if (e instanceof BackendUnavailableError || e instanceof ModelLoadError) throw e;
    const reason = (e as Error).message.replace(/\s+/g, " ").trim();
    throw new ModelLoadError(
      `Cannot load ${label} from ${dir}: not a loadable ONNX graph (${reason})`,
    );
  }
}
