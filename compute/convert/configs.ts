/**
 * diffusers/transformers component configs → the builder's configs, refusing what the builder
 * does not build. Every field of a diffusers config is read: a known field with a value the
 * builder does not implement, or an unknown field, is refused with one line rather than converted
 * into a network that silently computes something else. transformers' configs carry many generic
 * fields (dropout, token ids, export flags); only the ones that change the forward are checked.
 *
 * @module
 */
import type { ClipTextConfig } from "../networks/clip_text.ts";
import type { UnetConfig } from "../networks/sd_unet.ts";
import type { VaeConfig } from "../networks/sd_vae.ts";
import type { Qwen3Config } from "../networks/qwen3_text.ts";
import type { ZImageTransformerConfig } from "../networks/z_image_transformer.ts";
import type { QwenImageTransformerConfig } from "../networks/qwen_image_transformer.ts";
import type { QwenImageVaeConfig } from "../networks/qwen_image_vae.ts";
import { ConvertError } from "../errors.ts";

/** A parsed `config.json`. */
export type RawConfig = Record<string, unknown>;

/** A field's check: returns whether the value is one the builder implements. */
type Accept = (value: unknown) => boolean;

const isNull: Accept = (v) => v === null || v === undefined;
const is = (...values: unknown[]): Accept => (v) => isNull(v) || values.includes(v);
const any: Accept = () => true;
const isInt: Accept = (v) => isNull(v) || (Number.isInteger(v) && (v as number) > 0);
const isNumber: Accept = (v) => isNull(v) || typeof v === "number";
const isBool: Accept = (v) => isNull(v) || typeof v === "boolean";
const isIntOrList: Accept = (v) =>
  isInt(v) || (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x > 0));
const isStringList: Accept = (v) => Array.isArray(v) && v.every((x) => typeof x === "string");

/** Checks every field of `config` against `fields`; `_`-prefixed fields are metadata. */
function checkFields(label: string, config: RawConfig, fields: Record<string, Accept>): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("_")) continue;
    const accept = fields[key];
    if (!accept) {
      throw new ConvertError(`${label}: unknown config field "${key}" (not converted)`);
    }
    if (!accept(value)) {
      throw new ConvertError(
        `${label}: ${key} = ${JSON.stringify(value)} is not supported by the converter`,
      );
    }
  }
}

/** Reads a field with diffusers' default when absent. */
function field<T>(config: RawConfig, key: string, fallback: T): T {
  const v = config[key];
  return v === null || v === undefined ? fallback : v as T;
}

/** A per-down-block list from an int or a list of the right length. */
function perBlock(label: string, key: string, value: number | number[], blocks: number): number[] {
  if (typeof value === "number") return Array(blocks).fill(value);
  if (value.length !== blocks) {
    throw new ConvertError(
      `${label}: ${key} has ${value.length} entries for ${blocks} down blocks`,
    );
  }
  return value;
}

const UNET_FIELDS: Record<string, Accept> = {
  act_fn: is("silu"),
  addition_embed_type: is("text_time"),
  addition_embed_type_num_heads: any,
  addition_time_embed_dim: isInt,
  attention_head_dim: isIntOrList,
  attention_type: is("default"),
  block_out_channels: (v) => Array.isArray(v) && v.length > 0 && isIntOrList(v),
  center_input_sample: is(false),
  class_embed_type: isNull,
  class_embeddings_concat: is(false),
  conv_in_kernel: is(3),
  conv_out_kernel: is(3),
  cross_attention_dim: isInt,
  cross_attention_norm: isNull,
  down_block_types: (v) =>
    isStringList(v) &&
    (v as string[]).every((t) => t === "CrossAttnDownBlock2D" || t === "DownBlock2D"),
  downsample_padding: (v) => isNull(v) || v === 0 || v === 1,
  dropout: any,
  dual_cross_attention: is(false),
  encoder_hid_dim: isNull,
  encoder_hid_dim_type: isNull,
  flip_sin_to_cos: isBool,
  freq_shift: (v) => isNull(v) || Number.isInteger(v),
  in_channels: isInt,
  layers_per_block: isInt,
  mid_block_only_cross_attention: is(false),
  mid_block_scale_factor: is(1),
  mid_block_type: is("UNetMidBlock2DCrossAttn"),
  norm_eps: isNumber,
  norm_num_groups: isInt,
  num_attention_heads: isIntOrList,
  num_class_embeds: isNull,
  only_cross_attention: (v) => isNull(v) || v === false || (Array.isArray(v) && !v.some(Boolean)),
  out_channels: isInt,
  projection_class_embeddings_input_dim: isInt,
  resnet_out_scale_factor: is(1),
  resnet_skip_time_act: is(false),
  resnet_time_scale_shift: is("default"),
  reverse_transformer_layers_per_block: isNull,
  sample_size: any,
  time_cond_proj_dim: isNull,
  time_embedding_act_fn: isNull,
  time_embedding_dim: isNull,
  time_embedding_type: is("positional"),
  timestep_post_act: isNull,
  transformer_layers_per_block: isIntOrList,
  up_block_types: isStringList,
  // Only changes float16 arithmetic; the converter's graphs compute in float32.
  upcast_attention: isBool,
  use_linear_projection: isBool,
  // Written by diffusers' `EMAModel.save_pretrained` into fine-tunes' configs: training state.
  decay: any,
  inv_gamma: any,
  min_decay: any,
  optimization_step: any,
  power: any,
  update_after_step: any,
  use_ema_warmup: any,
};

/** An SD 1.x/2.x or SDXL `UNet2DConditionModel` config → {@linkcode UnetConfig}. */
export function unetConfig(label: string, config: RawConfig): UnetConfig {
  checkFields(label, config, UNET_FIELDS);
  const channels = field<number[]>(config, "block_out_channels", [320, 640, 1280, 1280]);
  const blocks = channels.length;
  const down = field<string[]>(config, "down_block_types", [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ]);
  const up = field<string[]>(config, "up_block_types", [
    "UpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
    "CrossAttnUpBlock2D",
  ]);
  if (down.length !== blocks) {
    throw new ConvertError(
      `${label}: ${down.length} down_block_types for ${blocks} block_out_channels`,
    );
  }
  const mirrored = [...down].reverse().map((t) =>
    t === "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : "UpBlock2D"
  );
  if (JSON.stringify(up) !== JSON.stringify(mirrored)) {
    throw new ConvertError(
      `${label}: up_block_types ${JSON.stringify(up)} do not mirror down_block_types (expected ${
        JSON.stringify(mirrored)
      })`,
    );
  }
  // diffusers' naming quirk: without num_attention_heads, attention_head_dim is the head count.
  const heads = perBlock(
    label,
    "attention heads",
    field(config, "num_attention_heads", field<number | number[]>(config, "attention_head_dim", 8)),
    blocks,
  );
  channels.forEach((c, i) => {
    if (c % heads[i] !== 0) {
      throw new ConvertError(`${label}: ${c} channels do not split into ${heads[i]} heads`);
    }
  });
  return {
    blockOutChannels: channels,
    crossAttention: down.map((t) => t === "CrossAttnDownBlock2D"),
    layersPerBlock: field(config, "layers_per_block", 2),
    heads,
    transformerDepth: perBlock(
      label,
      "transformer_layers_per_block",
      field<number | number[]>(config, "transformer_layers_per_block", 1),
      blocks,
    ),
    crossAttentionDim: field(config, "cross_attention_dim", 1280),
    normGroups: field(config, "norm_num_groups", 32),
    normEps: field(config, "norm_eps", 1e-5),
    inChannels: field(config, "in_channels", 4),
    outChannels: field(config, "out_channels", 4),
    linearProjection: field(config, "use_linear_projection", false),
    flipSinToCos: field(config, "flip_sin_to_cos", true),
    freqShift: field(config, "freq_shift", 0),
    downsamplePadding: field(config, "downsample_padding", 1),
    textTime: textTime(label, config),
  };
}

/** SDXL's `text_time` additional embedding, when the config has one. */
function textTime(label: string, config: RawConfig): UnetConfig["textTime"] {
  if (isNull(config.addition_embed_type)) return undefined;
  const timeEmbedDim = config.addition_time_embed_dim;
  const inputDim = config.projection_class_embeddings_input_dim;
  if (typeof timeEmbedDim !== "number" || typeof inputDim !== "number") {
    throw new ConvertError(
      `${label}: addition_embed_type "text_time" needs addition_time_embed_dim and projection_class_embeddings_input_dim`,
    );
  }
  if (inputDim <= 6 * timeEmbedDim || timeEmbedDim % 2) {
    throw new ConvertError(
      `${label}: projection_class_embeddings_input_dim ${inputDim} does not hold six ${timeEmbedDim}-wide time ids and a text embedding`,
    );
  }
  return { timeEmbedDim, inputDim };
}

const VAE_FIELDS: Record<string, Accept> = {
  act_fn: is("silu"),
  block_out_channels: (v) => Array.isArray(v) && v.length > 0 && isIntOrList(v),
  down_block_types: (v) =>
    isStringList(v) && (v as string[]).every((t) => t === "DownEncoderBlock2D"),
  up_block_types: (v) => isStringList(v) && (v as string[]).every((t) => t === "UpDecoderBlock2D"),
  in_channels: isInt,
  out_channels: isInt,
  latent_channels: isInt,
  layers_per_block: isInt,
  norm_num_groups: isInt,
  mid_block_add_attention: isBool,
  use_quant_conv: isBool,
  use_post_quant_conv: isBool,
  // Read by the pipelines, not part of the graphs.
  sample_size: any,
  scaling_factor: any,
  shift_factor: any,
  latents_mean: any,
  latents_std: any,
  force_upcast: any,
};

/** An `AutoencoderKL` config → {@linkcode VaeConfig}. */
export function vaeConfig(label: string, config: RawConfig): VaeConfig {
  checkFields(label, config, VAE_FIELDS);
  const channels = field<number[]>(config, "block_out_channels", [64]);
  for (const key of ["down_block_types", "up_block_types"]) {
    const types = field<string[]>(config, key, []);
    if (types.length !== channels.length) {
      throw new ConvertError(
        `${label}: ${types.length} ${key} for ${channels.length} block_out_channels`,
      );
    }
  }
  const imageChannels = field(config, "in_channels", 3);
  if (field(config, "out_channels", 3) !== imageChannels) {
    throw new ConvertError(`${label}: in_channels and out_channels differ`);
  }
  return {
    blockOutChannels: channels,
    layersPerBlock: field(config, "layers_per_block", 1),
    latentChannels: field(config, "latent_channels", 4),
    normGroups: field(config, "norm_num_groups", 32),
    imageChannels,
    midAttention: field(config, "mid_block_add_attention", true),
    quantConv: field(config, "use_quant_conv", true),
    postQuantConv: field(config, "use_post_quant_conv", true),
  };
}

/**
 * A transformers `CLIPTextConfig` (`config.json` of `CLIPTextModel`, or with `withProjection`
 * of `CLIPTextModelWithProjection`) → {@linkcode ClipTextConfig}.
 */
export function clipTextConfig(
  label: string,
  config: RawConfig,
  withProjection = false,
): ClipTextConfig {
  const number = (key: string, fallback: number) => {
    const v = field(config, key, fallback);
    if (typeof v !== "number") throw new ConvertError(`${label}: ${key} is not a number`);
    return v;
  };
  const activation = field(config, "hidden_act", "quick_gelu");
  if (activation !== "quick_gelu" && activation !== "gelu") {
    throw new ConvertError(
      `${label}: hidden_act = ${JSON.stringify(activation)} is not supported by the converter`,
    );
  }
  const modelType = field(config, "model_type", "clip_text_model");
  if (modelType !== "clip_text_model") {
    throw new ConvertError(
      `${label}: model_type ${JSON.stringify(modelType)} is not a CLIP text model`,
    );
  }
  const hiddenSize = number("hidden_size", 512);
  const heads = number("num_attention_heads", 8);
  if (hiddenSize % heads !== 0) {
    throw new ConvertError(
      `${label}: hidden_size ${hiddenSize} does not split into ${heads} heads`,
    );
  }
  return {
    vocabSize: number("vocab_size", 49408),
    hiddenSize,
    intermediateSize: number("intermediate_size", 2048),
    layers: number("num_hidden_layers", 12),
    heads,
    maxPositions: number("max_position_embeddings", 77),
    layerNormEps: number("layer_norm_eps", 1e-5),
    activation,
    eosTokenId: number("eos_token_id", 2),
    ...withProjection && { projectionDim: number("projection_dim", 512) },
  };
}

const Z_IMAGE_TRANSFORMER_FIELDS: Record<string, Accept> = {
  all_patch_size: (v) => isNull(v) || JSON.stringify(v) === "[2]",
  all_f_patch_size: (v) => isNull(v) || JSON.stringify(v) === "[1]",
  axes_dims: (v) =>
    Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && x > 0 && x % 2 === 0),
  axes_lens: (v) => Array.isArray(v) && v.every((x) => Number.isInteger(x) && x > 0),
  cap_feat_dim: isInt,
  dim: isInt,
  in_channels: isInt,
  n_heads: isInt,
  n_kv_heads: isInt,
  n_layers: isInt,
  n_refiner_layers: isInt,
  norm_eps: isNumber,
  qk_norm: isBool,
  rope_theta: isNumber,
  // Z-Image-Omni's SigLIP image conditioning: not converted.
  siglip_feat_dim: isNull,
  t_scale: isNumber,
};

/** A `ZImageTransformer2DModel` config → {@linkcode ZImageTransformerConfig}. */
export function zImageTransformerConfig(
  label: string,
  config: RawConfig,
): ZImageTransformerConfig {
  checkFields(label, config, Z_IMAGE_TRANSFORMER_FIELDS);
  const dim = field(config, "dim", 3840);
  const heads = field(config, "n_heads", 30);
  if (field(config, "n_kv_heads", heads) !== heads) {
    throw new ConvertError(
      `${label}: n_kv_heads ${config.n_kv_heads} differs from n_heads ${heads} (diffusers' Z-Image attention has as many key/value heads as query heads)`,
    );
  }
  if (dim % heads !== 0) {
    throw new ConvertError(`${label}: dim ${dim} does not split into ${heads} heads`);
  }
  const axesDims = field<number[]>(config, "axes_dims", [32, 48, 48]);
  const axesLens = field<number[]>(config, "axes_lens", [1024, 512, 512]);
  const headDim = dim / heads;
  if (axesDims.reduce((a, b) => a + b, 0) !== headDim || axesLens.length !== axesDims.length) {
    throw new ConvertError(
      `${label}: axes_dims ${JSON.stringify(axesDims)} (with axes_lens ${
        JSON.stringify(axesLens)
      }) do not cover the head size ${headDim}`,
    );
  }
  return {
    inChannels: field(config, "in_channels", 16),
    dim,
    layers: field(config, "n_layers", 30),
    refinerLayers: field(config, "n_refiner_layers", 2),
    heads,
    normEps: field(config, "norm_eps", 1e-5),
    qkNorm: field(config, "qk_norm", true),
    capFeatDim: field(config, "cap_feat_dim", 2560),
    ropeTheta: field(config, "rope_theta", 256),
    tScale: field(config, "t_scale", 1000),
    axesDims,
    axesLens,
  };
}

/**
 * The fields shared by Qwen text models (transformers' `Qwen3Config`, Qwen2.5-VL's text config);
 * `checks` adds the family's own.
 */
function qwenTextConfig(
  label: string,
  config: RawConfig,
  checks: [string, Accept][],
): Omit<Qwen3Config, "qkNorm" | "qkvBias" | "read"> {
  const number = (key: string, fallback?: number) => {
    const v = field<unknown>(config, key, fallback);
    if (typeof v !== "number") throw new ConvertError(`${label}: ${key} is not a number`);
    return v;
  };
  for (
    const [key, accept] of [
      ["hidden_act", is("silu")],
      ["use_sliding_window", is(false)],
      [
        "layer_types",
        (v: unknown) =>
          isNull(v) || isStringList(v) && (v as string[]).every((t) => t === "full_attention"),
      ],
      ...checks,
    ] as [string, Accept][]
  ) {
    if (!accept(config[key])) {
      throw new ConvertError(
        `${label}: ${key} = ${JSON.stringify(config[key])} is not supported by the converter`,
      );
    }
  }
  const hiddenSize = number("hidden_size");
  const heads = number("num_attention_heads");
  const kvHeads = number("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) {
    throw new ConvertError(
      `${label}: ${heads} attention heads do not share ${kvHeads} key/value heads evenly`,
    );
  }
  return {
    vocabSize: number("vocab_size"),
    hiddenSize,
    intermediateSize: number("intermediate_size"),
    layers: number("num_hidden_layers"),
    heads,
    kvHeads,
    headDim: number("head_dim", hiddenSize / heads),
    rmsNormEps: number("rms_norm_eps", 1e-6),
    ropeTheta: number("rope_theta", 1e6),
  };
}

/**
 * A transformers `Qwen3Config` (`config.json` of `Qwen3Model`) → {@linkcode Qwen3Config} as
 * Z-Image reads it; only the fields that change the forward are checked (transformers' configs
 * carry many generic ones).
 */
export function qwen3Config(label: string, config: RawConfig): Qwen3Config {
  if (field(config, "model_type", "qwen3") !== "qwen3") {
    throw new ConvertError(
      `${label}: model_type ${JSON.stringify(config.model_type)} is not a Qwen3 text model`,
    );
  }
  const text = qwenTextConfig(label, config, [
    ["attention_bias", is(false)],
    ["rope_scaling", isNull],
  ]);
  if (text.layers < 2) {
    throw new ConvertError(
      `${label}: ${text.layers} layer(s): Z-Image reads the last layer but one (hidden_states[-2])`,
    );
  }
  return { ...text, qkNorm: true, qkvBias: false, read: "penultimate" };
}

/**
 * The language model of a `Qwen2_5_VLForConditionalGeneration` config (its `text_config`, or the
 * top level where older transformers wrote the text fields) → {@linkcode Qwen3Config} as
 * Qwen-Image reads it (`hidden_states[-1]`). Its mRoPE is plain RoPE on text alone, whatever the
 * sections.
 */
export function qwen25VlTextConfig(label: string, config: RawConfig): Qwen3Config {
  if (config.model_type !== "qwen2_5_vl") {
    throw new ConvertError(
      `${label}: model_type ${JSON.stringify(config.model_type)} is not Qwen2.5-VL`,
    );
  }
  const text = typeof config.text_config === "object" && config.text_config !== null
    ? { ...config, ...config.text_config as RawConfig }
    : config;
  const rope: Accept = (v) =>
    isNull(v) || (typeof v === "object" &&
      ["default", "mrope", undefined].includes((v as RawConfig).rope_type as string) &&
      ["default", "mrope", undefined].includes((v as RawConfig).type as string));
  return {
    ...qwenTextConfig(label, text, [["rope_scaling", rope]]),
    qkNorm: false,
    qkvBias: true,
    read: "last",
  };
}

const QWEN_IMAGE_TRANSFORMER_FIELDS: Record<string, Accept> = {
  attention_head_dim: isInt,
  axes_dims_rope: (v) =>
    Array.isArray(v) && v.length === 3 &&
    v.every((x) => Number.isInteger(x) && x > 0 && x % 2 === 0),
  // The guidance-distilled, edit-2511 (`zero_cond_t`) and layered variants: not converted.
  guidance_embeds: is(false),
  in_channels: isInt,
  joint_attention_dim: isInt,
  num_attention_heads: isInt,
  num_layers: isInt,
  out_channels: isInt,
  // QwenImagePipeline packs latents in 2×2 patches.
  patch_size: is(2),
  // In Qwen/Qwen-Image's config but no parameter of diffusers' class, which ignores it.
  pooled_projection_dim: any,
  use_additional_t_cond: is(false),
  use_layer3d_rope: is(false),
  zero_cond_t: is(false),
};

/** A `QwenImageTransformer2DModel` config → {@linkcode QwenImageTransformerConfig}. */
export function qwenImageTransformerConfig(
  label: string,
  config: RawConfig,
): QwenImageTransformerConfig {
  checkFields(label, config, QWEN_IMAGE_TRANSFORMER_FIELDS);
  const headDim = field(config, "attention_head_dim", 128);
  const axesDims = field<number[]>(config, "axes_dims_rope", [16, 56, 56]);
  if (axesDims.reduce((a, b) => a + b, 0) !== headDim) {
    throw new ConvertError(
      `${label}: axes_dims_rope ${JSON.stringify(axesDims)} do not cover the head size ${headDim}`,
    );
  }
  const inChannels = field(config, "in_channels", 64);
  return {
    patchSize: 2,
    inChannels,
    // diffusers' default is 16; an explicit null means in_channels.
    outChannels: config.out_channels === undefined
      ? 16
      : (config.out_channels as number | null) ?? inChannels,
    layers: field(config, "num_layers", 60),
    headDim,
    heads: field(config, "num_attention_heads", 24),
    jointAttentionDim: field(config, "joint_attention_dim", 3584),
    axesDims,
  };
}

const QWEN_IMAGE_VAE_FIELDS: Record<string, Accept> = {
  attn_scales: (v) => Array.isArray(v) && v.every((x) => typeof x === "number"),
  base_dim: isInt,
  dim_mult: (v) => Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && x > 0),
  // Dropout does nothing at inference.
  dropout: isNumber,
  input_channels: isInt,
  // Read by the pipeline (vae_decoder/config.json keeps them), not by the graphs.
  latents_mean: any,
  latents_std: any,
  num_res_blocks: isInt,
  // Temporal resampling never runs on a single frame (diffusers' first chunk only fills caches).
  temperal_downsample: (v) => Array.isArray(v) && v.every((x) => typeof x === "boolean"),
  z_dim: isInt,
};

/** An `AutoencoderKLQwenImage` config → {@linkcode QwenImageVaeConfig}. */
export function qwenImageVaeConfig(label: string, config: RawConfig): QwenImageVaeConfig {
  checkFields(label, config, QWEN_IMAGE_VAE_FIELDS);
  const dimMult = field<number[]>(config, "dim_mult", [1, 2, 4, 4]);
  const temporal = field<boolean[]>(config, "temperal_downsample", [false, true, true]);
  if (temporal.length !== dimMult.length - 1) {
    throw new ConvertError(
      `${label}: temperal_downsample has ${temporal.length} entries for ${dimMult.length} levels`,
    );
  }
  const zDim = field(config, "z_dim", 16);
  for (const key of ["latents_mean", "latents_std"]) {
    const v = config[key];
    if (v !== undefined && !(Array.isArray(v) && v.length === zDim)) {
      throw new ConvertError(`${label}: ${key} must hold z_dim = ${zDim} numbers`);
    }
  }
  return {
    baseDim: field(config, "base_dim", 96),
    zDim,
    dimMult,
    numResBlocks: field(config, "num_res_blocks", 2),
    attnScales: field<number[]>(config, "attn_scales", []),
    inputChannels: field(config, "input_channels", 3),
  };
}
