/**
 * One diffusers/transformers component (its config and weights) → the model-folder component(s)
 * it becomes, each a `model.onnx` (weights in `model.onnx_data`) in our graph interfaces
 * (docs/onnx-interfaces.md) and its `config.json`: `CLIPTextModel` → `text_encoder/`,
 * `UNet2DConditionModel` → `unet/`, `AutoencoderKL` → `vae_decoder/` and `vae_encoder/`,
 * `ZImageTransformer2DModel` → `transformer/`, `Qwen3Model` (or the `Qwen3ForCausalLM` checkpoint
 * holding it) → `text_encoder/` (Z-Image's reading of it: the last layer but one).
 *
 * @module
 */
import { clipTextModel } from "../networks/clip_text.ts";
import type { GraphBuilder } from "../graph/onnx_builder.ts";
import { sdUnet } from "../networks/sd_unet.ts";
import { sdVaeDecoder, sdVaeEncoder } from "../networks/sd_vae.ts";
import { qwen3TextEncoder } from "../networks/qwen3_text.ts";
import { zImageTransformer } from "../networks/z_image_transformer.ts";
import { ConvertError } from "../errors.ts";
import { exists, readJsonFile } from "../model/files.ts";
import {
  clipTextConfig,
  qwen3Config,
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

/** The component classes this converter turns into graphs. */
export const CONVERTIBLE_CLASSES = [
  "CLIPTextModel",
  "CLIPTextModelWithProjection",
  "UNet2DConditionModel",
  "AutoencoderKL",
  "ZImageTransformer2DModel",
  "Qwen3Model",
  "Qwen3ForCausalLM",
];

/** Tensors that are buffers, not parameters: stored by some exports, never needed. */
const BUFFERS = /(^|\.)position_ids$/;

/** A component's class: diffusers' `_class_name` or transformers' `architectures[0]`. */
export function componentClass(config: RawConfig): string | undefined {
  if (typeof config._class_name === "string") return config._class_name;
  const arch = config.architectures;
  return Array.isArray(arch) && typeof arch[0] === "string" ? arch[0] : undefined;
}

/**
 * Builds the graph(s) of one component from its config and weights; every stored tensor must be
 * used. `label` names the source in messages; `textEncoderFolder` the output folder of a text
 * encoder (SDXL's second is `text_encoder_2`).
 */
export function convertComponent(
  label: string,
  config: RawConfig,
  weights: SafetensorsWeights,
  textEncoderFolder = "text_encoder",
): OutputFiles {
  const cls = componentClass(config);
  let unused = (key: string) => BUFFERS.test(key);
  const files: OutputFiles = new Map();
  const json = (path: string, value: unknown) =>
    files.set(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
  const graph = (folder: string, g: GraphBuilder) => {
    const { model, externalData } = g.serialize({ externalData: "model.onnx_data" });
    files.set(`${folder}/model.onnx`, model);
    if (externalData?.length) files.set(`${folder}/model.onnx_data`, externalData);
    json(`${folder}/config.json`, config);
  };
  switch (cls) {
    case "CLIPTextModel":
    case "CLIPTextModelWithProjection": {
      const clip = clipTextConfig(label, config, cls === "CLIPTextModelWithProjection");
      graph(textEncoderFolder, clipTextModel(clip, 0, weights));
      break;
    }
    case "UNet2DConditionModel":
      graph("unet", sdUnet(unetConfig(label, config), 0, 64, 2, 77, weights).graph);
      break;
    case "AutoencoderKL": {
      const vae = vaeConfig(label, config);
      graph("vae_decoder", sdVaeDecoder(vae, 0, 64, 1, weights).graph);
      graph("vae_encoder", sdVaeEncoder(vae, 0, 512, 1, weights).graph);
      break;
    }
    case "ZImageTransformer2DModel":
      graph("transformer", zImageTransformer(zImageTransformerConfig(label, config), weights));
      break;
    case "Qwen3Model":
    case "Qwen3ForCausalLM": {
      const qwen = qwen3Config(label, config);
      // The causal-LM checkpoint holds the same model under `model.`, and an `lm_head`.
      const prefix = cls === "Qwen3ForCausalLM" ? "model." : "";
      const source = {
        take: (name: string, dims: readonly number[]) => weights.take(prefix + name, dims),
      };
      graph(textEncoderFolder, qwen3TextEncoder(qwen, source));
      // Z-Image reads `hidden_states[-2]`: the last layer and the final norm never run.
      const last = `${prefix}layers.${qwen.layers - 1}.`;
      unused = (key) =>
        key.startsWith(last) || key === `${prefix}norm.weight` || key === "lm_head.weight";
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
  return files;
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
