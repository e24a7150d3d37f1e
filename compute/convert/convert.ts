/**
 * `convert(src, out)`: a diffusers pipeline folder, one component folder, or a single-file
 * checkpoint → model-folder files in our graph interfaces (or an ONNX model folder → the same
 * folder at `q8` or `q4`: `quantize_onnx.ts`), written into a temporary folder beside
 * `out` and renamed into place at the end, so nothing half-written is ever left under `out`.
 *
 * It streams: only safetensors headers are read up front, and each tensor is read, converted and
 * appended to its graph's `model.onnx_data` as the graph asks for it; the graphs keep only
 * external-data references. Peak memory is about one tensor (a few copies of it) plus the graph
 * being built, whatever the checkpoint's size (`deno task bench:convert`).
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { WEIGHT_DTYPES, type WeightDtype } from "../graph/onnx_builder.ts";
import { ConvertError } from "../errors.ts";
import { convertedFamilyOf, FAMILIES } from "../families/mod.ts";
import { exists, readJsonFile } from "../model/files.ts";
import {
  FolderWriter,
  type OutputWriter,
  readComponentFolder,
  writeComponent,
} from "./components.ts";
import type { RawConfig } from "./configs.ts";
import { qwenTokenizerJson } from "./qwen_tokenizer.ts";
import { clipTokenizerFiles } from "../tokenizers/clip_vocabulary.ts";
import {
  detectFamily,
  SINGLE_FILE_LAYOUTS,
  singleFileLayout,
  splitSingleFile,
} from "./single_file.ts";
import { PICKLE_EXTENSIONS, pickleRefusal, readSafetensors } from "./weights.ts";
import { isOnnxModelFolder, quantizeOnnxFolder } from "./quantize_onnx.ts";

/** Weight precisions of the output graphs (see `WeightOutput.dtype` in the builder). */
export const DTYPES = WEIGHT_DTYPES;

/** Options of {@linkcode convert}. */
export interface ConvertOptions {
  dtype?: string;
  /**
   * A diffusers pipeline folder whose configs, tokenizer and scheduler a single-file checkpoint
   * (which has none) is converted with; its weights are not read. Without it, the family is told
   * from the checkpoint's keys and its known configs are used (`known_configs/`).
   */
  config?: string;
  /**
   * Told the bytes of stored tensor data behind each tensor as it is read, which add up to the
   * checkpoint's tensors (less those the architecture leaves unused): a conversion's progress.
   */
  onRead?: (bytes: number) => void;
}

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
  const dtype = (options.dtype ?? "fp32") as WeightDtype;
  if (!DTYPES.includes(dtype)) {
    throw new ConvertError(`--dtype ${dtype} is not supported (supported: ${DTYPES.join(", ")})`);
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
    const configDir = options.config;
    return await writeModel(
      out,
      (writer) => singleFile(src, configDir, writer, dtype, options.onRead),
    );
  }
  if (await isOnnxModelFolder(src)) {
    return await writeModel(out, (writer) => quantizeOnnxFolder(src, writer, dtype));
  }
  if (await exists(`${src}/model_index.json`)) {
    return await writeModel(out, (writer) => pipelineFolder(src, writer, dtype, options.onRead));
  }
  if (await exists(`${src}/config.json`)) {
    const { config, weights } = await readComponentFolder(src);
    weights.onRead = options.onRead;
    // A text encoder keeps its folder's name (SDXL's second is `text_encoder_2`).
    const name = basename(src.replace(/\/+$/, ""));
    const folder = /^text_encoder(_\d+)?$/.test(name) ? name : undefined;
    return await writeComponents(
      out,
      (writer) => writeComponent(writer, src, config, weights, folder, dtype),
    );
  }
  throw new ConvertError(
    `${src}: neither a diffusers pipeline folder (model_index.json) nor a component folder (config.json)`,
  );
}

/** A pipeline folder: its SD components converted, tokenizer and scheduler copied. */
async function pipelineFolder(
  src: string,
  writer: OutputWriter,
  dtype: WeightDtype,
  onRead?: (bytes: number) => void,
): Promise<void> {
  const index = await readJsonFile<RawConfig>(`${src}/model_index.json`).catch((e) => {
    throw new ConvertError((e as Error).message);
  });
  const cls = String(index._class_name);
  const family = convertedFamilyOf(cls);
  if (!family) {
    throw new ConvertError(
      `${src}/model_index.json: pipeline class ${
        JSON.stringify(cls)
      } is not converted (supported: ${
        FAMILIES.flatMap((f) => f.convert.pipelineClasses).join(", ")
      })`,
    );
  }
  const pipeline = family.convert;
  for (const [name, entry] of Object.entries(index)) {
    if (name.startsWith("_") || !Array.isArray(entry) || entry[1] === null) continue;
    if (NOT_SERVED.has(name)) continue;
    if (![...pipeline.components, ...pipeline.copy].includes(name)) {
      throw new ConvertError(`${src}/model_index.json: unknown component "${name}" (${entry[1]})`);
    }
  }
  for (const name of [...pipeline.components, ...pipeline.copy]) {
    if (!Array.isArray(index[name]) || !(await exists(`${src}/${name}`))) {
      throw new ConvertError(`${src}: component ${name}/ is missing`);
    }
  }
  for (const name of pipeline.components) {
    const { config, weights } = await readComponentFolder(`${src}/${name}`);
    weights.onRead = onRead;
    writeComponent(writer, `${src}/${name}`, config, weights, name, dtype);
  }
  const copied = await copyFolders(src, pipeline.copy, writer);
  if (pipeline.tokenizer === "qwen2" && !copied.has("tokenizer/tokenizer.json")) {
    // Qwen2Tokenizer saved by the slow tokenizer: vocab.json and merges.txt only.
    const tokenizer = new Map(
      [...copied].filter(([p]) => p.startsWith("tokenizer/")).map(([p, b]) => [p.slice(10), b]),
    );
    writer.file("tokenizer/tokenizer.json", qwenTokenizerJson(`${src}/tokenizer`, tokenizer));
  }
  writer.file("model_index.json", modelIndex(index));
}

/** The folder of each family's known configs (a diffusers pipeline folder without weights). */
const KNOWN_CONFIGS = new URL("./known_configs/", import.meta.url).pathname;

/**
 * A single-file checkpoint with the configs, tokenizers and scheduler of `configDir`, or, without
 * one, with its family's known configs and tokenizers built from OpenAI's CLIP vocabulary.
 */
async function singleFile(
  path: string,
  configDir: string | undefined,
  writer: OutputWriter,
  dtype: WeightDtype,
  onRead?: (bytes: number) => void,
): Promise<void> {
  const tensors = await readSafetensors(path);
  const layout = configDir
    ? singleFileLayout([...tensors.keys()])
    : SINGLE_FILE_LAYOUTS[detectFamily(path, tensors)];
  const dir = configDir ?? `${KNOWN_CONFIGS}${layout.family}`;
  const what = configDir ? "--config" : `the known ${layout.name} configs`;
  const index = await readJsonFile<RawConfig>(`${dir}/model_index.json`).catch((e) => {
    throw new ConvertError(`${what}: ${(e as Error).message}`);
  });
  const cls = layout.served.pipelineClasses[0];
  if (index._class_name !== cls) {
    throw new ConvertError(
      `--config ${configDir}: a single-file ${layout.name} checkpoint needs a ${cls} folder, not ${
        JSON.stringify(index._class_name)
      }`,
    );
  }
  const pipeline = layout.served.convert;
  const configs: Record<string, RawConfig> = {};
  for (const name of pipeline.components) {
    configs[name] = await readJsonFile<RawConfig>(`${dir}/${name}/config.json`).catch((e) => {
      throw new ConvertError(`${what}: ${(e as Error).message}`);
    });
  }
  const levels = configs.vae.block_out_channels;
  const parts = splitSingleFile(path, tensors, layout, {
    unetLayersPerBlock: Number(configs.unet.layers_per_block ?? 2),
    vaeLevels: Array.isArray(levels) ? levels.length : 1,
    textEncoderLayers: Number(configs.text_encoder.num_hidden_layers ?? 12),
  });
  for (const name of pipeline.components) {
    const weights = parts[name as keyof typeof parts]!;
    weights.onRead = onRead;
    writeComponent(writer, `${path} (${name})`, configs[name], weights, name, dtype);
  }
  if (configDir) await copyFolders(configDir, pipeline.copy, writer);
  else {
    await copyFolders(dir, ["scheduler"], writer);
    for (const [folder, pad] of Object.entries(layout.tokenizers)) {
      for (const [file, bytes] of clipTokenizerFiles(pad)) writer.file(`${folder}/${file}`, bytes);
    }
  }
  writer.file("model_index.json", modelIndex(index));
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

/**
 * Copies the files of `folders` (tokenizer, scheduler: small text files) into `writer`; returns
 * them, path → bytes.
 */
async function copyFolders(
  src: string,
  folders: readonly string[],
  writer: OutputWriter,
): Promise<Map<string, Uint8Array>> {
  const copied = new Map<string, Uint8Array>();
  for (const folder of folders) {
    const dir = `${src}/${folder}`;
    if (!(await exists(dir))) throw new ConvertError(`${src}: component ${folder}/ is missing`);
    for await (const entry of Deno.readDir(dir)) {
      // A Hugging Face cache snapshot links its files to blobs: follow the links.
      if (entry.isFile || (entry.isSymlink && (await Deno.stat(join(dir, entry.name))).isFile)) {
        const bytes = await Deno.readFile(join(dir, entry.name));
        writer.file(`${folder}/${entry.name}`, bytes);
        copied.set(`${folder}/${entry.name}`, bytes);
      }
    }
  }
  return copied;
}

/** Writes a whole model folder: into a sibling temporary folder, then renamed to `out`. */
async function writeModel(
  out: string,
  write: (writer: OutputWriter) => Promise<void>,
): Promise<string[]> {
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
    await write(new FolderWriter(tmp));
    const written = await listFiles(tmp);
    await Deno.rename(tmp, out);
    return written;
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Adds component folders to `out`: each written in a temporary folder, then renamed into it. */
async function writeComponents(
  out: string,
  write: (writer: OutputWriter) => void,
): Promise<string[]> {
  await Deno.mkdir(out, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: out, prefix: ".converting-" });
  try {
    write(new FolderWriter(tmp));
    const written = await listFiles(tmp);
    const folders = [...new Set(written.map((p) => p.split("/")[0]))];
    for (const folder of folders) {
      if (await exists(join(out, folder))) {
        throw new ConvertError(`--out ${out} already has ${folder}/ (not overwritten)`);
      }
    }
    for (const folder of folders) await Deno.rename(join(tmp, folder), join(out, folder));
    return written;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** The files under `dir`, relative to it, sorted. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(join(dir, prefix))) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) files.push(...await listFiles(dir, path));
    else files.push(path);
  }
  return files.sort();
}
