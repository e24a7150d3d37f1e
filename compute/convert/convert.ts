/**
 * `convert(src, out)`: a diffusers pipeline folder, one component folder, or a single-file
 * checkpoint → model-folder files in our graph interfaces, written into a temporary folder beside
 * `out` and renamed into place at the end, so nothing half-written is ever left under `out`.
 *
 * This slice holds one component's tensors and graph in memory at a time (the whole safetensors
 * file of it, its float32 copy and the serialised graph): streaming tensors into external data is
 * a later step.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { ConvertError } from "../errors.ts";
import { exists, readJsonFile } from "../model/files.ts";
import { convertComponent, type OutputFiles, readComponentFolder } from "./components.ts";
import type { RawConfig } from "./configs.ts";
import { qwenTokenizerJson } from "./qwen_tokenizer.ts";
import { singleFileLayout, splitSingleFile } from "./single_file.ts";
import { PICKLE_EXTENSIONS, pickleRefusal, readSafetensors } from "./weights.ts";

/** Weight precisions of the output graphs; this slice writes float32 only. */
export const DTYPES = ["fp32"] as const;

/** Options of {@linkcode convert}. */
export interface ConvertOptions {
  dtype?: string;
  /**
   * A diffusers pipeline folder whose configs, tokenizer and scheduler a single-file checkpoint
   * (which has none) is converted with; its weights are not read.
   */
  config?: string;
}

/** The pipeline classes a whole folder is converted for, and the components each needs. */
const PIPELINES: Record<string, { convert: string[]; copy: string[] }> = {
  StableDiffusionPipeline: {
    convert: ["text_encoder", "unet", "vae"],
    copy: ["tokenizer", "scheduler"],
  },
  StableDiffusionXLPipeline: {
    convert: ["text_encoder", "text_encoder_2", "unet", "vae"],
    copy: ["tokenizer", "tokenizer_2", "scheduler"],
  },
  ZImagePipeline: {
    convert: ["text_encoder", "transformer", "vae"],
    copy: ["tokenizer", "scheduler"],
  },
};

/** Components a diffusers SD folder may name that the server does not run (left out). */
const NOT_SERVED = new Set(["safety_checker", "feature_extractor", "image_encoder"]);

/**
 * Converts `src` into `out`. A pipeline folder or single-file checkpoint becomes the model folder
 * `out` (which must not exist yet); a component folder adds the folder(s) it becomes to `out`
 * (which may exist, without them). Returns the paths written, relative to `out`.
 */
export async function convert(
  src: string,
  out: string,
  options: ConvertOptions = {},
): Promise<string[]> {
  const dtype = options.dtype ?? "fp32";
  if (!(DTYPES as readonly string[]).includes(dtype)) {
    throw new ConvertError(
      `--dtype ${dtype} is not supported yet (supported: ${DTYPES.join(", ")})`,
    );
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(src);
  } catch {
    throw new ConvertError(`${src}: no such file or folder`);
  }
  if (info.isFile) {
    if (PICKLE_EXTENSIONS.some((ext) => src.endsWith(ext))) throw pickleRefusal(src);
    if (!src.endsWith(".safetensors")) {
      throw new ConvertError(`${src}: not a .safetensors checkpoint or a diffusers folder`);
    }
    if (!options.config) {
      throw new ConvertError(
        `${src} is a single-file checkpoint, which carries no configs or tokenizer: give --config <diffusers folder of the same model family>`,
      );
    }
    return await writeModel(out, await singleFile(src, options.config));
  }
  if (await exists(`${src}/model_index.json`)) {
    return await writeModel(out, await pipelineFolder(src));
  }
  if (await exists(`${src}/config.json`)) {
    const { config, weights } = await readComponentFolder(src);
    // A text encoder keeps its folder's name (SDXL's second is `text_encoder_2`).
    const name = basename(src.replace(/\/+$/, ""));
    const folder = /^text_encoder(_\d+)?$/.test(name) ? name : undefined;
    return await writeComponents(out, convertComponent(src, config, weights, folder));
  }
  throw new ConvertError(
    `${src}: neither a diffusers pipeline folder (model_index.json) nor a component folder (config.json)`,
  );
}

/** A pipeline folder: its SD components converted, tokenizer and scheduler copied. */
async function pipelineFolder(src: string): Promise<OutputFiles> {
  const index = await readJsonFile<RawConfig>(`${src}/model_index.json`).catch((e) => {
    throw new ConvertError((e as Error).message);
  });
  const cls = String(index._class_name);
  const pipeline = PIPELINES[cls];
  if (!pipeline) {
    throw new ConvertError(
      `${src}/model_index.json: pipeline class ${
        JSON.stringify(cls)
      } is not converted (supported: ${Object.keys(PIPELINES).join(", ")})`,
    );
  }
  const files: OutputFiles = new Map();
  for (const [name, entry] of Object.entries(index)) {
    if (name.startsWith("_") || !Array.isArray(entry) || entry[1] === null) continue;
    if (NOT_SERVED.has(name)) continue;
    if (![...pipeline.convert, ...pipeline.copy].includes(name)) {
      throw new ConvertError(`${src}/model_index.json: unknown component "${name}" (${entry[1]})`);
    }
  }
  for (const name of [...pipeline.convert, ...pipeline.copy]) {
    if (!Array.isArray(index[name]) || !(await exists(`${src}/${name}`))) {
      throw new ConvertError(`${src}: component ${name}/ is missing`);
    }
  }
  for (const name of pipeline.convert) {
    const { config, weights } = await readComponentFolder(`${src}/${name}`);
    for (const [path, bytes] of convertComponent(`${src}/${name}`, config, weights, name)) {
      files.set(path, bytes);
    }
  }
  await copyFolders(src, pipeline.copy, files);
  if (cls === "ZImagePipeline" && !files.has("tokenizer/tokenizer.json")) {
    // Qwen2Tokenizer saved by the slow tokenizer: vocab.json and merges.txt only.
    const tokenizer = new Map(
      [...files].filter(([p]) => p.startsWith("tokenizer/")).map(([p, b]) => [p.slice(10), b]),
    );
    files.set("tokenizer/tokenizer.json", qwenTokenizerJson(`${src}/tokenizer`, tokenizer));
  }
  files.set("model_index.json", modelIndex(index));
  return files;
}

/** A single-file checkpoint with the configs, tokenizers and scheduler of `configDir`. */
async function singleFile(path: string, configDir: string): Promise<OutputFiles> {
  const index = await readJsonFile<RawConfig>(`${configDir}/model_index.json`).catch((e) => {
    throw new ConvertError(`--config: ${(e as Error).message}`);
  });
  const tensors = await readSafetensors(path);
  const layout = singleFileLayout(path, [...tensors.keys()]);
  if (index._class_name !== layout.pipeline) {
    throw new ConvertError(
      `--config ${configDir}: a single-file ${layout.name} checkpoint needs a ${layout.pipeline} folder, not ${
        JSON.stringify(index._class_name)
      }`,
    );
  }
  const pipeline = PIPELINES[layout.pipeline];
  const configs: Record<string, RawConfig> = {};
  for (const name of pipeline.convert) {
    configs[name] = await readJsonFile<RawConfig>(`${configDir}/${name}/config.json`).catch(
      (e) => {
        throw new ConvertError(`--config: ${(e as Error).message}`);
      },
    );
  }
  const levels = configs.vae.block_out_channels;
  const parts = splitSingleFile(path, tensors, layout, {
    unetLayersPerBlock: Number(configs.unet.layers_per_block ?? 2),
    vaeLevels: Array.isArray(levels) ? levels.length : 1,
  });
  const files: OutputFiles = new Map();
  for (const name of pipeline.convert) {
    const weights = parts[name as keyof typeof parts]!;
    for (const [p, bytes] of convertComponent(`${path} (${name})`, configs[name], weights, name)) {
      files.set(p, bytes);
    }
  }
  await copyFolders(configDir, pipeline.copy, files);
  files.set("model_index.json", modelIndex(index));
  return files;
}

/** The served folder's `model_index.json`: the VAE split into decoder and encoder, as Optimum. */
function modelIndex(index: RawConfig): Uint8Array {
  const out: RawConfig = {};
  for (const [name, entry] of Object.entries(index)) {
    if (name === "vae") {
      out.vae_decoder = entry;
      out.vae_encoder = entry;
    } else if (!NOT_SERVED.has(name)) out[name] = entry;
  }
  out.requires_safety_checker = false;
  return new TextEncoder().encode(JSON.stringify(out, null, 2) + "\n");
}

/** Copies the files of `folders` (tokenizer, scheduler: small text files) into `files`. */
async function copyFolders(src: string, folders: string[], files: OutputFiles): Promise<void> {
  for (const folder of folders) {
    const dir = `${src}/${folder}`;
    if (!(await exists(dir))) throw new ConvertError(`${src}: component ${folder}/ is missing`);
    for await (const entry of Deno.readDir(dir)) {
      // A Hugging Face cache snapshot links its files to blobs: follow the links.
      if (entry.isFile || (entry.isSymlink && (await Deno.stat(join(dir, entry.name))).isFile)) {
        files.set(`${folder}/${entry.name}`, await Deno.readFile(join(dir, entry.name)));
      }
    }
  }
}

/** Writes a whole model folder: into a sibling temporary folder, then renamed to `out`. */
async function writeModel(out: string, files: OutputFiles): Promise<string[]> {
  if (await exists(out)) {
    throw new ConvertError(
      `--out ${out} already exists (a converted model is written to a new folder)`,
    );
  }
  const parent = dirname(out) || ".";
  await Deno.mkdir(parent, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: parent, prefix: `.${basename(out)}.converting-` });
  try {
    // A temporary folder is private (0700); the model folder is an ordinary one.
    await Deno.chmod(tmp, 0o755);
    await writeAll(tmp, files);
    await Deno.rename(tmp, out);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return [...files.keys()];
}

/** Adds component folders to `out`: each written in a temporary folder, then renamed into it. */
async function writeComponents(out: string, files: OutputFiles): Promise<string[]> {
  const folders = [...new Set([...files.keys()].map((p) => p.split("/")[0]))];
  for (const folder of folders) {
    if (await exists(join(out, folder))) {
      throw new ConvertError(`--out ${out} already has ${folder}/ (not overwritten)`);
    }
  }
  await Deno.mkdir(out, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: out, prefix: ".converting-" });
  try {
    await writeAll(tmp, files);
    for (const folder of folders) await Deno.rename(join(tmp, folder), join(out, folder));
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return [...files.keys()];
}

async function writeAll(dir: string, files: OutputFiles): Promise<void> {
  for (const [path, bytes] of files) {
    const target = join(dir, path);
    await Deno.mkdir(dirname(target), { recursive: true });
    await Deno.writeFile(target, bytes);
  }
}
