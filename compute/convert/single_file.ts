/**
 * Single-file Stable Diffusion 1.x and 2.x checkpoints (the original LDM key layout that A1111 and
 * ComfyUI use) and SDXL checkpoints (Stability's SGM layout) → the diffusers parameter names of
 * each component, and which of these families a file is. The renames are those of diffusers' single-file loader
 * (`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`,
 * `convert_open_clip_checkpoint`), written here from the layouts themselves:
 *
 * - UNet, `model.diffusion_model.`: `input_blocks.N` counts the `layers_per_block` resnets (each
 *   with its attention as `.1`) and the down-sampler (`.0.op`) of each level in order, after
 *   `input_blocks.0` (= `conv_in`); `output_blocks.N` likewise with `layers_per_block + 1`
 *   resnets and the up-sampler (`.1.conv` or `.2.conv`); `middle_block.0/1/2`; resnets name
 *   their layers `in_layers.0/2`, `emb_layers.1`, `out_layers.0/3`, `skip_connection`.
 * - VAE, `first_stage_model.`: `down.N.block.M`, `down.N.downsample`, `mid.block_1/2`,
 *   `mid.attn_1` (`norm`, `q`, `k`, `v`, `proj_out` as 1×1 convs), `norm_out`; the decoder's
 *   `up.N` counts from the narrowest level, diffusers' `up_blocks` from the widest.
 * - Text encoder, `cond_stage_model.transformer.` (SD 1.x): transformers' own names (older files
 *   omit the `text_model.` level).
 * - SD 2.x: `cond_stage_model.model.` is OpenCLIP ViT-H/14's text tower in OpenCLIP's names (as
 *   SDXL's second encoder below). diffusers' SD 2.x text encoder is a `CLIPTextModel` of one layer
 *   fewer (23 of 24): SD 2.x reads the penultimate layer and then `ln_final`, so diffusers'
 *   single-file loader drops the last `resblocks` layer, `text_projection` and `logit_scale`
 *   (`SD_2_TEXT_ENCODER_KEYS_TO_IGNORE`); here every layer from the config's `num_hidden_layers`
 *   on is dropped, so a file written back from a diffusers folder (which has no such layer) converts
 *   too.
 * - SDXL: the UNet and VAE as above (SDXL's `label_emb.0.0/2` is diffusers' `add_embedding`
 *   `linear_1/2`); `conditioner.embedders.0.transformer.` is `text_encoder` in transformers'
 *   names; `conditioner.embedders.1.model.` is OpenCLIP's text tower, `text_encoder_2`:
 *   `token_embedding`, `positional_embedding`, `ln_final`, `transformer.resblocks.N` with `ln_1/2`,
 *   `mlp.c_fc/c_proj`, `attn.out_proj` and `attn.in_proj_weight/bias` (q, k and v joined along
 *   the first dimension, in that order), and `text_projection` applied as `x @ P` (diffusers'
 *   Linear weight is its transpose).
 *
 * The family is told from the keys as diffusers' `infer_diffusers_model_type` does, with the keys
 * of its `CHECKPOINT_KEY_NAMES`: SD 2.x when the second input block's cross-attention keys are
 * 1024 wide (OpenCLIP ViT-H), SDXL base when `conditioner.embedders.1.model.` holds OpenCLIP
 * layers, SD 1.x when the UNet has SD's twelfth output block and a CLIP text encoder under
 * `cond_stage_model.transformer.` (diffusers takes anything else for SD 1.x; here it is refused,
 * so a checkpoint of another shape never meets SD 1.5's configs). Inpainting UNets (9 input
 * channels), the SDXL refiner and the ×4 upscaler are recognised and refused by name.
 *
 * @module
 */
import { ConvertError } from "../errors.ts";
import type { Family } from "../families/family.ts";
import { STABLE_DIFFUSION } from "../families/stable_diffusion/mod.ts";
import { STABLE_DIFFUSION_XL } from "../families/stable_diffusion_xl/mod.ts";
import { type MappedTensor, SafetensorsWeights, type StoredTensor } from "./weights.ts";

/** The diffusers component folders a single-file checkpoint holds. */
export type SingleFileComponent = "unet" | "vae" | "text_encoder" | "text_encoder_2";

/** The model families whose single-file checkpoints are converted. */
export type SingleFileFamily = "sd1" | "sd2" | "sdxl";

/** How a component's keys are named in a single file. */
type KeyStyle = "unet" | "vae" | "clip" | "open_clip";

/** A single-file key layout: its components, each under its key prefix. */
export interface SingleFileLayout {
  /** e.g. "SD 1.x". */
  name: string;
  /** The family, whose known configs (`known_configs/<family>/`) convert it without `--config`. */
  family: SingleFileFamily;
  /** The family serving it: a diffusers folder of its first pipeline class gives its configs. */
  served: Family;
  /**
   * The pad token of each tokenizer its known configs lack (they are written from OpenAI's CLIP
   * vocabulary): CLIP ViT-L/14's pads with `<|endoftext|>`, the OpenCLIP ones with `!`, as the
   * families' published `special_tokens_map.json` files say.
   */
  tokenizers: Readonly<Record<string, string>>;
  components: Partial<Record<SingleFileComponent, { prefix: string; keys: KeyStyle }>>;
}

const UNET = { prefix: "model.diffusion_model.", keys: "unet" } as const;
const VAE = { prefix: "first_stage_model.", keys: "vae" } as const;

/** The layouts converted. */
export const SINGLE_FILE_LAYOUTS: Record<SingleFileFamily, SingleFileLayout> = {
  sd1: {
    name: "SD 1.x",
    family: "sd1",
    served: STABLE_DIFFUSION,
    tokenizers: { tokenizer: "<|endoftext|>" },
    components: {
      unet: UNET,
      vae: VAE,
      text_encoder: { prefix: "cond_stage_model.transformer.", keys: "clip" },
    },
  },
  sd2: {
    name: "SD 2.x",
    family: "sd2",
    served: STABLE_DIFFUSION,
    tokenizers: { tokenizer: "!" },
    components: {
      unet: UNET,
      vae: VAE,
      text_encoder: { prefix: "cond_stage_model.model.", keys: "open_clip" },
    },
  },
  sdxl: {
    name: "SDXL",
    family: "sdxl",
    served: STABLE_DIFFUSION_XL,
    tokenizers: { tokenizer: "<|endoftext|>", tokenizer_2: "!" },
    components: {
      unet: UNET,
      vae: VAE,
      text_encoder: { prefix: "conditioner.embedders.0.transformer.", keys: "clip" },
      text_encoder_2: { prefix: "conditioner.embedders.1.model.", keys: "open_clip" },
    },
  },
};

/**
 * Top-level entries that are not weights of the served network (EMA copies, schedule buffers,
 * OpenCLIP's contrastive temperature `logit_scale`, which text features never use).
 */
const IGNORED =
  /^(model_ema\.|alphas_cumprod|alphas_cumprod_prev|betas|log_one_minus_alphas_cumprod|posterior_|sqrt_|logvar$|(conditioner\.embedders\.1|cond_stage_model)\.model\.logit_scale$)/;

/** diffusers' `CHECKPOINT_KEY_NAMES` entries the family is told by. */
const KEY = {
  v1: "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
  v2: "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
  xlBase: "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
  xlRefiner: "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias",
  upscale: "model.diffusion_model.input_blocks.10.0.skip_connection.bias",
  convIn: "model.diffusion_model.input_blocks.0.0.weight",
};

/**
 * The family of a single-file checkpoint, from its keys and shapes (see the module's notes);
 * a checkpoint of no family converted here is a {@linkcode ConvertError} of one line.
 */
export function detectFamily(
  path: string,
  tensors: ReadonlyMap<string, { shape: number[] }>,
): SingleFileFamily {
  const refuse = (what: string) =>
    new ConvertError(`${path} is ${what}: not converted (SD 1.x, SD 2.x and SDXL base are)`);
  const inputs = tensors.get(KEY.convIn)?.shape[1];
  if (inputs !== undefined && inputs !== 4) {
    throw refuse(`a UNet of ${inputs} input channels (an inpainting or other conditioned model)`);
  }
  if (tensors.get(KEY.v2)?.shape.at(-1) === 1024) return "sd2";
  if (tensors.has(KEY.xlBase)) return "sdxl";
  if (tensors.has(KEY.xlRefiner)) throw refuse("an SDXL refiner checkpoint");
  if (tensors.has(KEY.upscale)) throw refuse("an SD ×4 upscaler checkpoint");
  const clip = [...tensors.keys()].some((k) => k.startsWith("cond_stage_model.transformer."));
  if (tensors.has(KEY.v1) && clip) return "sd1";
  throw new ConvertError(
    `${path}: cannot tell its model family from its keys (SD 1.x, SD 2.x and SDXL base are recognised as diffusers' single-file loader recognises them): name a diffusers folder of its family with --config (deno task convert) or --model-config (serve)`,
  );
}

/** What {@linkcode splitSingleFile} needs of the configs. */
export interface SingleFileShape {
  /** The UNet's `layers_per_block`. */
  unetLayersPerBlock: number;
  /** The VAE's level count (`len(block_out_channels)`). */
  vaeLevels: number;
  /**
   * The OpenCLIP text encoder's `num_hidden_layers` where the file may hold more (SD 2.x: the
   * layers from this one on are dropped, as diffusers does).
   */
  textEncoderLayers?: number;
}

const RESNET: [RegExp, string][] = [
  [/^in_layers\.0\./, "norm1."],
  [/^in_layers\.2\./, "conv1."],
  [/^out_layers\.0\./, "norm2."],
  [/^out_layers\.3\./, "conv2."],
  [/^emb_layers\.1\./, "time_emb_proj."],
  [/^skip_connection\./, "conv_shortcut."],
  [/^nin_shortcut\./, "conv_shortcut."],
  [/^(norm1|norm2|conv1|conv2)\./, "$1."],
];

const VAE_ATTENTION: [RegExp, string][] = [
  [/^norm\./, "group_norm."],
  [/^q\./, "to_q."],
  [/^k\./, "to_k."],
  [/^v\./, "to_v."],
  [/^proj_out\./, "to_out.0."],
];

function rename(rules: [RegExp, string][], rest: string): string | undefined {
  for (const [from, to] of rules) if (from.test(rest)) return rest.replace(from, to);
  return undefined;
}

/** The diffusers name of a UNet key (without its prefix), or undefined when it fits no rule. */
function unetName(key: string, perLevel: number): string | undefined {
  const fixed: [RegExp, string][] = [
    [/^time_embed\.0\./, "time_embedding.linear_1."],
    [/^time_embed\.2\./, "time_embedding.linear_2."],
    [/^label_emb\.0\.0\./, "add_embedding.linear_1."],
    [/^label_emb\.0\.2\./, "add_embedding.linear_2."],
    [/^input_blocks\.0\.0\./, "conv_in."],
    [/^out\.0\./, "conv_norm_out."],
    [/^out\.2\./, "conv_out."],
  ];
  const simple = rename(fixed, key);
  if (simple) return simple;
  let m = key.match(/^input_blocks\.(\d+)\.(\d+)\.(.+)$/);
  if (m) {
    const i = Number(m[1]) - 1, j = Number(m[2]), rest = m[3];
    const level = Math.floor(i / (perLevel + 1)), layer = i % (perLevel + 1);
    if (layer === perLevel) {
      return rest.startsWith("op.")
        ? `down_blocks.${level}.downsamplers.0.conv.${rest.slice(3)}`
        : undefined;
    }
    if (j === 0) {
      const r = rename(RESNET, rest);
      return r && `down_blocks.${level}.resnets.${layer}.${r}`;
    }
    return j === 1 ? `down_blocks.${level}.attentions.${layer}.${rest}` : undefined;
  }
  m = key.match(/^middle_block\.(\d+)\.(.+)$/);
  if (m) {
    const rest = m[2];
    if (m[1] === "1") return `mid_block.attentions.0.${rest}`;
    const r = rename(RESNET, rest);
    return r && (m[1] === "0" || m[1] === "2")
      ? `mid_block.resnets.${m[1] === "0" ? 0 : 1}.${r}`
      : undefined;
  }
  m = key.match(/^output_blocks\.(\d+)\.(\d+)\.(.+)$/);
  if (m) {
    const i = Number(m[1]), j = Number(m[2]), rest = m[3];
    const level = Math.floor(i / (perLevel + 1)), layer = i % (perLevel + 1);
    if (j === 0) {
      const r = rename(RESNET, rest);
      return r && `up_blocks.${level}.resnets.${layer}.${r}`;
    }
    if (/^conv\.(weight|bias)$/.test(rest)) return `up_blocks.${level}.upsamplers.0.${rest}`;
    return j === 1 ? `up_blocks.${level}.attentions.${layer}.${rest}` : undefined;
  }
  return undefined;
}

/** The diffusers name of a VAE key (without its prefix), and whether it is a 1×1 conv to squeeze. */
function vaeName(key: string, levels: number): MappedTensor | undefined {
  const m = key.match(/^(encoder|decoder)\.(.+)$/);
  if (!m) {
    return /^(quant_conv|post_quant_conv)\.(weight|bias)$/.test(key) ? { key } : undefined;
  }
  const [, part, rest] = m;
  const named = (name: string | undefined, squeeze = false) =>
    name === undefined ? undefined : { key: `${part}.${name}`, squeeze };
  if (/^(conv_in|conv_out)\./.test(rest)) return named(rest);
  if (rest.startsWith("norm_out.")) return named(`conv_norm_out.${rest.slice(9)}`);
  let b = rest.match(/^mid\.block_([12])\.(.+)$/);
  if (b) {
    const r = rename(RESNET, b[2]);
    return named(r && `mid_block.resnets.${Number(b[1]) - 1}.${r}`);
  }
  b = rest.match(/^mid\.attn_1\.(.+)$/);
  if (b) {
    const r = rename(VAE_ATTENTION, b[1]);
    return named(
      r && `mid_block.attentions.0.${r}`,
      r?.endsWith("weight") && !r.startsWith("group_norm"),
    );
  }
  b = rest.match(
    /^(down|up)\.(\d+)\.(block\.(\d+)\.(.+)|downsample\.conv\.(.+)|upsample\.conv\.(.+))$/,
  );
  if (!b) return undefined;
  const level = b[1] === "down" ? Number(b[2]) : levels - 1 - Number(b[2]);
  const blocks = `${b[1]}_blocks.${level}`;
  if (b[4] !== undefined) {
    const r = rename(RESNET, b[5]);
    return named(r && `${blocks}.resnets.${b[4]}.${r}`);
  }
  if (b[6] !== undefined && b[1] === "down") return named(`${blocks}.downsamplers.0.conv.${b[6]}`);
  if (b[7] !== undefined && b[1] === "up") return named(`${blocks}.upsamplers.0.conv.${b[7]}`);
  return undefined;
}

const OPEN_CLIP_LAYER: [RegExp, string][] = [
  [/^ln_1\./, "layer_norm1."],
  [/^ln_2\./, "layer_norm2."],
  [/^mlp\.c_fc\./, "mlp.fc1."],
  [/^mlp\.c_proj\./, "mlp.fc2."],
  [/^attn\.out_proj\./, "self_attn.out_proj."],
];

/** A diffusers parameter's name and how it sits in the stored tensor (whose key is known). */
type Placement = [string, Omit<MappedTensor, "key">];

/**
 * The diffusers parameters an OpenCLIP text-tower key (without its prefix) holds: one, or q, k
 * and v for a joined `in_proj`; `[]` for a key diffusers drops (a layer from `layers` on, and
 * `text_projection` where the model has none); undefined for a key that fits no rule.
 */
function openClipNames(
  key: string,
  options: { layers?: number; projection: boolean },
): Placement[] | undefined {
  const fixed: Record<string, Placement> = {
    "token_embedding.weight": ["text_model.embeddings.token_embedding.weight", {}],
    "positional_embedding": ["text_model.embeddings.position_embedding.weight", {}],
    "ln_final.weight": ["text_model.final_layer_norm.weight", {}],
    "ln_final.bias": ["text_model.final_layer_norm.bias", {}],
  };
  if (fixed[key]) return [fixed[key]];
  if (key === "text_projection") {
    return options.projection ? [["text_projection.weight", { transpose: true }]] : [];
  }
  const m = key.match(/^transformer\.resblocks\.(\d+)\.(.+)$/);
  if (!m) return undefined;
  if (options.layers !== undefined && Number(m[1]) >= options.layers) return [];
  const layer = `text_model.encoder.layers.${m[1]}.`;
  const joined = m[2].match(/^attn\.in_proj_(weight|bias)$/);
  if (joined) {
    return ["q", "k", "v"].map((
      x,
      i,
    ) => [`${layer}self_attn.${x}_proj.${joined[1]}`, { part: [i, 3] }]);
  }
  const r = rename(OPEN_CLIP_LAYER, m[2]);
  return r === undefined ? undefined : [[layer + r, {}]];
}

/** The diffusers parameters a component's key (without its prefix) holds (`[]`: dropped). */
function componentNames(
  component: SingleFileComponent,
  keys: KeyStyle,
  rest: string,
  shape: SingleFileShape,
): Placement[] | undefined {
  switch (keys) {
    case "unet": {
      const name = unetName(rest, shape.unetLayersPerBlock);
      return name === undefined ? undefined : [[name, {}]];
    }
    case "vae": {
      const mapped = vaeName(rest, shape.vaeLevels);
      return mapped && [[mapped.key, { squeeze: mapped.squeeze }]];
    }
    case "clip":
      return [[rest.startsWith("text_model.") ? rest : `text_model.${rest}`, {}]];
    case "open_clip":
      // SDXL's second encoder is a CLIPTextModelWithProjection of every layer; SD 2.x's is not.
      return component === "text_encoder_2"
        ? openClipNames(rest, { projection: true })
        : openClipNames(rest, { layers: shape.textEncoderLayers, projection: false });
  }
}

/**
 * The key layout of a single-file checkpoint, told by its text encoders' prefixes (with `--config`
 * the family is not needed, only where each component's keys are).
 */
export function singleFileLayout(keys: readonly string[]): SingleFileLayout {
  if (keys.some((k) => k.startsWith("conditioner.embedders."))) return SINGLE_FILE_LAYOUTS.sdxl;
  if (keys.some((k) => k.startsWith("cond_stage_model.model."))) return SINGLE_FILE_LAYOUTS.sd2;
  return SINGLE_FILE_LAYOUTS.sd1;
}

/**
 * Splits a single-file checkpoint's tensors into its layout's components, each a weight source
 * under its diffusers names. Refuses keys that fit no rule.
 */
export function splitSingleFile(
  path: string,
  tensors: ReadonlyMap<string, StoredTensor>,
  layout: SingleFileLayout,
  shape: SingleFileShape,
): Partial<Record<SingleFileComponent, SafetensorsWeights>> {
  const keys = [...tensors.keys()];
  const split: Partial<Record<SingleFileComponent, SafetensorsWeights>> = {};
  const components = Object.entries(layout.components) as [
    SingleFileComponent,
    { prefix: string; keys: KeyStyle },
  ][];
  const prefixes = components.map(([, c]) => c.prefix);
  for (const [component, { prefix, keys: style }] of components) {
    const own = new Map<string, StoredTensor>();
    const names = new Map<string, MappedTensor>();
    for (const [key, t] of tensors) {
      if (!key.startsWith(prefix) || IGNORED.test(key)) continue;
      const mapped = componentNames(component, style, key.slice(prefix.length), shape);
      if (!mapped) {
        throw new ConvertError(
          `${path}: tensor '${key}' fits no ${layout.name} ${component} key`,
        );
      }
      if (mapped.length) own.set(key, t);
      for (const [name, where] of mapped) names.set(name, { ...where, key });
    }
    if (!own.size) {
      throw new ConvertError(`${path}: no ${component} tensors (no keys under '${prefix}')`);
    }
    split[component] = new SafetensorsWeights(`${path} (${component})`, own, names);
  }
  const stray = keys.find((k) => !prefixes.some((p) => k.startsWith(p)) && !IGNORED.test(k));
  if (stray) {
    throw new ConvertError(`${path}: tensor '${stray}' belongs to no ${layout.name} component`);
  }
  return split;
}
