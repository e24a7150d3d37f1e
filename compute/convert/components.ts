/**
 * One diffusers/transformers component (its config and weights) → the model-folder component(s)
 * it becomes, each a `model.onnx` (weights in `model.onnx_data`) in our graph interfaces
 * (docs/onnx-interfaces.md) and its `config.json`: `CLIPTextModel` → `text_encoder/`,
 * `UNet2DConditionModel` → `unet/`, `AutoencoderKL` → `vae_decoder/` and `vae_encoder/`,
 * `ZImageTransformer2DModel` and `QwenImageTransformer2DModel` → `transformer/`,
 * `Qwen2_5_VLForConditionalGeneration` → `text_encoder/` (Qwen-Image's reading: the language
 * model's last layer after the final norm; the vision tower is left out),
 * `AutoencoderKLQwenImage` → `vae_decoder/` and `vae_encoder/` (one frame), `Qwen3Model` (or the `Qwen3ForCausalLM` checkpoint
 * holding it) → `text_encoder/` (Z-Image's reading of it: the last layer but one).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { clipTextModel } from "../networks/clip_text.ts";
import type { GraphBuilder, WeightDtype, WeightSource } from "../graph/onnx_builder.ts";
import { sdUnet } from "../networks/sd_unet.ts";
import { sdVaeDecoder, sdVaeEncoder } from "../networks/sd_vae.ts";
import { qwen3TextEncoder } from "../networks/qwen3_text.ts";
import { zImageTransformer } from "../networks/z_image_transformer.ts";
import { qwenImageTransformer } from "../networks/qwen_image_transformer.ts";
import { qwenImageVaeDecoder, qwenImageVaeEncoder } from "../networks/qwen_image_vae.ts";
import { ConvertError } from "../errors.ts";
import { exists, readJsonFile } from "../model/files.ts";
import { WriteBehindFile } from "./write_behind.ts";
import {
  clipTextConfig,
  qwen25VlTextConfig,
  qwen3Config,
  qwenImageTransformerConfig,
  qwenImageVaeConfig,
  type RawConfig,
  unetConfig,
  vaeConfig,
  zImageTransformerConfig,
} from "./configs.ts";
import {
  PICKLE_EXTENSIONS,
  pickleRefusal,
  readSafetensors,
  SafetensorsWeights,
} from "./weights.ts";

/** Files to write, path relative to the output folder → bytes. */
export type OutputFiles = Map<string, Uint8Array>;

/**
 * Where a conversion writes its files, paths relative to the output folder: small files whole,
 * weights appended one tensor at a time.
 */
export interface OutputWriter {
  /** Writes a small file (a graph, a config). */
  file(path: string, bytes: Uint8Array): void;
  /** Opens `path` (an external-data file) for appending; `close` it when the graph is done. */
  append(path: string): { append(bytes: Uint8Array): void; close(): void };
}

/** An {@linkcode OutputWriter} into memory: its `files` (tests, and fixtures' in-memory folders). */
export class MemoryWriter implements OutputWriter {
  readonly files: OutputFiles = new Map();

  file(path: string, bytes: Uint8Array): void {
    this.files.set(path, bytes);
  }

  append(path: string) {
    const chunks: Uint8Array[] = [];
    return {
      append: (bytes: Uint8Array) => void chunks.push(bytes.slice()), // lent: copied
      close: () => {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) all.set(c, (at += c.length) - c.length);
        if (all.length) this.files.set(path, all);
      },
    };
  }
}

/**
 * An {@linkcode OutputWriter} into folder `dir`, each external-data file appended as it grows (by a
 * worker thread: {@linkcode WriteBehindFile}).
 */
export class FolderWriter implements OutputWriter {
  constructor(readonly dir: string) {}

  file(path: string, bytes: Uint8Array): void {
    const target = join(this.dir, path);
    Deno.mkdirSync(dirname(target), { recursive: true });
    Deno.writeFileSync(target, bytes);
  }

  append(path: string) {
    const target = join(this.dir, path);
    Deno.mkdirSync(dirname(target), { recursive: true });
    const file = new WriteBehindFile(target);
    let size = 0;
    return {
      append: (bytes: Uint8Array) => {
        file.append(bytes);
        size += bytes.length;
      },
      close: () => {
        file.close();
        // A graph small enough to keep every weight inline has no external data.
        if (size === 0) Deno.removeSync(target);
      },
    };
  }
}

/** The component classes this converter turns into graphs. */
export const CONVERTIBLE_CLASSES = [
  "CLIPTextModel",
  "CLIPTextModelWithProjection",
  "UNet2DConditionModel",
  "AutoencoderKL",
  "ZImageTransformer2DModel",
  "QwenImageTransformer2DModel",
  "AutoencoderKLQwenImage",
  "Qwen3Model",
  "Qwen3ForCausalLM",
  "Qwen2_5_VLForConditionalGeneration",
];

/** Tensors that are buffers, not parameters: stored by some exports, never needed. */
const BUFFERS = /(^|\.)position_ids$/;

/**
 * A component's class: diffusers' `_class_name` or transformers' `architectures[0]` (for a
 * multimodal model, newer transformers write it in `text_config` only).
 */
export function componentClass(config: RawConfig): string | undefined {
  if (typeof config._class_name === "string") return config._class_name;
  const text = config.text_config as RawConfig | undefined;
  const arch = config.architectures ?? text?.architectures;
  return Array.isArray(arch) && typeof arch[0] === "string" ? arch[0] : undefined;
}

/**
 * Builds the graph(s) of one component from its config and weights, in memory (see
 * {@linkcode writeComponent}).
 */
export function convertComponent(
  label: string,
  config: RawConfig,
  weights: SafetensorsWeights,
  textEncoderFolder = "text_encoder",
  dtype: WeightDtype = "fp32",
): OutputFiles {
  const writer = new MemoryWriter();
  writeComponent(writer, label, config, weights, textEncoderFolder, dtype);
  return writer.files;
}

/**
 * Builds the graph(s) of one component from its config and weights into `writer`, each weight
 * written to the graph's `model.onnx_data` as it is made; every stored tensor must be used.
 * `label` names the source in messages; `textEncoderFolder` the output folder of a text encoder
 * (SDXL's second is `text_encoder_2`); `dtype` the weights' precision (see `WeightOutput.dtype`).
 */
export function writeComponent(
  writer: OutputWriter,
  label: string,
  config: RawConfig,
  weights: SafetensorsWeights,
  textEncoderFolder = "text_encoder",
  dtype: WeightDtype = "fp32",
): void {
  const cls = componentClass(config);
  let unused = (key: string) => BUFFERS.test(key);
  const json = (path: string, value: unknown) =>
    writer.file(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
  /**
   * Builds one graph into `folder` from the weights stored under `prefix` + each parameter's name
   * (lent, as each is written to `model.onnx_data` before the next is read).
   */
  const graph = (folder: string, build: (source: WeightSource) => GraphBuilder, prefix = "") => {
    const data = writer.append(`${folder}/model.onnx_data`);
    try {
      const output = { location: "model.onnx_data", append: data.append, dtype };
      const g = build({
        take: (name, dims) => weights.lend(prefix + name, dims),
        lendEncoded: (name, dims, encoding) => weights.lendEncoded(prefix + name, dims, encoding),
        output,
      });
      writer.file(`${folder}/model.onnx`, g.serialize({ externalData: "model.onnx_data" }).model);
    } finally {
      data.close();
    }
    json(`${folder}/config.json`, config);
  };
  switch (cls) {
    case "CLIPTextModel":
    case "CLIPTextModelWithProjection": {
      const clip = clipTextConfig(label, config, cls === "CLIPTextModelWithProjection");
      graph(textEncoderFolder, (source) => clipTextModel(clip, 0, source));
      break;
    }
    case "UNet2DConditionModel":
      graph("unet", (source) => sdUnet(unetConfig(label, config), 0, 64, 2, 77, source).graph);
      break;
    case "AutoencoderKL": {
      const vae = vaeConfig(label, config);
      graph("vae_decoder", (source) => sdVaeDecoder(vae, 0, 64, 1, source).graph);
      graph("vae_encoder", (source) => sdVaeEncoder(vae, 0, 512, 1, source).graph);
      break;
    }
    case "ZImageTransformer2DModel": {
      const z = zImageTransformerConfig(label, config);
      graph("transformer", (source) => zImageTransformer(z, source));
      break;
    }
    case "QwenImageTransformer2DModel": {
      const q = qwenImageTransformerConfig(label, config);
      graph("transformer", (source) => qwenImageTransformer(q, source));
      break;
    }
    case "AutoencoderKLQwenImage": {
      const vae = qwenImageVaeConfig(label, config);
      graph("vae_decoder", (source) => qwenImageVaeDecoder(vae, source));
      graph("vae_encoder", (source) => qwenImageVaeEncoder(vae, source));
      // A single frame never runs the temporal resampling convolutions.
      unused = (key) => key.includes(".time_conv.");
      break;
    }
    case "Qwen3Model":
    case "Qwen3ForCausalLM": {
      const qwen = qwen3Config(label, config);
      // The causal-LM checkpoint holds the same model under `model.`, and an `lm_head`.
      const prefix = cls === "Qwen3ForCausalLM" ? "model." : "";
      graph(textEncoderFolder, (source) => qwen3TextEncoder(qwen, source), prefix);
      // Z-Image reads `hidden_states[-2]`: the last layer and the final norm never run.
      const last = `${prefix}layers.${qwen.layers - 1}.`;
      unused = (key) =>
        key.startsWith(last) || key === `${prefix}norm.weight` || key === "lm_head.weight";
      break;
    }
    case "Qwen2_5_VLForConditionalGeneration": {
      const qwen = qwen25VlTextConfig(label, config);
      // The language model is under `model.` (transformers before 4.52 and its reversed mapping on
      // save) or `model.language_model.`; the vision tower and `lm_head` are not used.
      const prefix = weights.has("model.language_model.embed_tokens.weight")
        ? "model.language_model."
        : "model.";
      graph(textEncoderFolder, (source) => qwen3TextEncoder(qwen, source), prefix);
      unused = (key) => /^(model\.)?visual\./.test(key) || key === "lm_head.weight";
      break;
    }
    default:
      throw new ConvertError(
        `${label}: component class ${JSON.stringify(cls ?? null)} is not supported (supported: ${
          CONVERTIBLE_CLASSES.join(", ")
        })`,
      );
  }
  weights.checkAllUsed(unused);
}

/** The weight files diffusers and transformers write, by name stem. */
const WEIGHT_STEMS = ["diffusion_pytorch_model", "model"];
/** Variants tried after the full-precision file, as `from_pretrained(variant=…)` names them. */
const VARIANTS = ["", ".fp16", ".bf16"];

/** Reads a component folder (`config.json` and its safetensors, sharded or not). */
export async function readComponentFolder(
  dir: string,
): Promise<{ config: RawConfig; weights: SafetensorsWeights }> {
  const configPath = `${dir}/config.json`;
  if (!(await exists(configPath))) {
    throw new ConvertError(`${dir}: no config.json (not a diffusers component folder)`);
  }
  const config = await readJsonFile<RawConfig>(configPath).catch((e) => {
    throw new ConvertError((e as Error).message);
  });
  for (const variant of VARIANTS) {
    for (const stem of WEIGHT_STEMS) {
      const single = `${dir}/${stem}${variant}.safetensors`;
      if (await exists(single)) {
        return { config, weights: new SafetensorsWeights(single, await readSafetensors(single)) };
      }
      const index = `${single}.index.json`;
      if (await exists(index)) return { config, weights: await readShards(dir, index) };
    }
  }
  for await (const entry of Deno.readDir(dir)) {
    if (PICKLE_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
      throw pickleRefusal(`${dir}/${entry.name}`);
    }
  }
  throw new ConvertError(`${dir}: no .safetensors weights next to config.json`);
}

/** A sharded checkpoint: `*.safetensors.index.json`'s `weight_map` names each tensor's shard. */
async function readShards(dir: string, indexPath: string): Promise<SafetensorsWeights> {
  const index = await readJsonFile<{ weight_map?: Record<string, string> }>(indexPath).catch(
    (e) => {
      throw new ConvertError((e as Error).message);
    },
  );
  if (typeof index.weight_map !== "object" || index.weight_map === null) {
    throw new ConvertError(`${indexPath}: no weight_map`);
  }
  const tensors = new Map();
  for (const shard of new Set(Object.values(index.weight_map))) {
    if (typeof shard !== "string" || shard.includes("/") || !shard.endsWith(".safetensors")) {
      throw new ConvertError(
        `${indexPath}: shard ${JSON.stringify(shard)} is not a file beside it`,
      );
    }
    for (const [key, t] of await readSafetensors(`${dir}/${shard}`)) {
      if (index.weight_map[key] !== shard) {
        throw new ConvertError(
          `${dir}/${shard}: tensor '${key}' is not listed for it in ${indexPath}`,
        );
      }
      tensors.set(key, t);
    }
  }
  const missing = Object.keys(index.weight_map).find((k) => !tensors.has(k));
  if (missing) {
    throw new ConvertError(`${indexPath} lists '${missing}', which its shard does not hold`);
  }
  return new SafetensorsWeights(indexPath, tensors);
}
