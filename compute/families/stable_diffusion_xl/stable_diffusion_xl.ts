/**
 * Stable Diffusion XL (SDXL, SDXL-Turbo) over ONNX graphs in the diffusers/Optimum folder layout
 * (contract: docs/onnx-interfaces.md), following diffusers' `StableDiffusionXLPipeline.__call__`.
 * Everything but the conditioning is SD's (`stable_diffusion.ts`): latents, the scheduler loop,
 * guidance `ε_u + g·(ε_c − ε_u)` and the decode of `latents / scaling_factor` (in float32,
 * `force_upcast` changes nothing).
 *
 * The conditioning (`encode_prompt` and `_get_add_time_ids`):
 *
 * - each prompt runs through both CLIP encoders, each with its own tokenizer (SDXL's second pads
 *   with `!`); their penultimate layers (`hidden_states[-2]`) are joined along the features,
 *   `text_encoder`'s first, into `encoder_hidden_states`;
 * - the pooled `text_embeds` come from `text_encoder_2` (its projection of the end-of-text state);
 * - `time_ids` are (original size, crop top-left, target size) = `(h, w, 0, 0, h, w)`;
 * - with guidance (`guidance_scale > 1`) the negative row is encoded from the negative prompt, or,
 *   when none is given and `model_index.json` says `force_zeros_for_empty_prompt` (SDXL's
 *   default), is all zeros (hidden states and `text_embeds`; its `time_ids` are the prompt's).
 *
 * @module
 */
import { InterfaceMismatchError } from "../../errors.ts";
import { readJsonFile } from "../../model/files.ts";
import { axisStatement, checkAgreement, configStatement } from "../../model/graph_interface.ts";
import type { GraphSource } from "../../model/model_folder.ts";
import { ClipTokenizer } from "../../tokenizers/clip_tokenizer.ts";
import { asEncodedText, ClipEncoder } from "../../pipelines/clip_encoder.ts";
import type { EncodedText } from "../../pipelines/common.ts";
import type { PipelineDefaults } from "../../pipelines/pipeline.ts";
import {
  type ConditioningRequest,
  FLOAT,
  isDistilled,
  openSdFolder,
  readOptionalConfig,
  sdParts,
  type SdText,
  StableDiffusionPipeline,
  type TextConditioning,
} from "../stable_diffusion/stable_diffusion.ts";
import type { VaeDecodeSettings } from "../../pipelines/vae_decode.ts";
import { STABLE_DIFFUSION_XL } from "./mod.ts";

/** SDXL's two-encoder conditioning with its pooled text embedding and size/crop ids. */
class SdxlConditioning implements TextConditioning {
  readonly unetInputs = [
    { name: "text_embeds", types: FLOAT, ranks: [2] },
    { name: "time_ids", types: FLOAT, ranks: [2] },
  ];

  constructor(
    private readonly encoder: ClipEncoder,
    private readonly encoder2: ClipEncoder,
    /** The penultimate-layer output of each encoder. */
    private readonly layers: readonly [string, string],
    private readonly forceZerosForEmptyPrompt: boolean,
  ) {}

  async encode(
    { prompt, negativePrompt, cfg, width, height }: ConditioningRequest,
  ): Promise<{ text: SdText; tokenizeMs: number }> {
    const zeros = cfg && negativePrompt === undefined && this.forceZerosForEmptyPrompt;
    const prompts = cfg && !zeros ? [negativePrompt ?? "", prompt] : [prompt];
    const [layer1, layer2] = this.layers;
    const first = await this.encoder.encode(prompts, [layer1]);
    const second = await this.encoder2.encode(prompts, [layer2, "text_embeds"]);
    let hidden = joinFeatures(
      asEncodedText(first.outputs[layer1]),
      asEncodedText(second.outputs[layer2]),
    );
    let pooled = asEncodedText(second.outputs.text_embeds);
    if (zeros) {
      hidden = withZeroRow(hidden);
      pooled = withZeroRow(pooled);
    }
    const timeIds = Float32Array.of(height, width, 0, 0, height, width);
    const rows = hidden.rows;
    const text: SdText = {
      hidden,
      extra: {
        text_embeds: pooled,
        time_ids: {
          data: new Float32Array(rows * 6).map((_, i) => timeIds[i % 6]),
          rows,
          length: 1,
          width: 6,
        },
      },
    };
    return { text, tokenizeMs: first.tokenizeMs + second.tokenizeMs };
  }

  async release(): Promise<void> {
    await this.encoder.session.release();
    await this.encoder2.session.release();
  }
}

/** Two encoders' `[rows, length, D1]` and `[rows, length, D2]` → `[rows, length, D1 + D2]`. */
function joinFeatures(a: EncodedText, b: EncodedText): EncodedText {
  const width = a.width + b.width;
  const data = new Float32Array(a.rows * a.length * width);
  for (let t = 0; t < a.rows * a.length; t++) {
    data.set(a.data.subarray(t * a.width, (t + 1) * a.width), t * width);
    data.set(b.data.subarray(t * b.width, (t + 1) * b.width), t * width + a.width);
  }
  return { data, rows: a.rows, length: a.length, width };
}

/** A zero row before the rows of `text` (the zeroed negative prompt). */
function withZeroRow(text: EncodedText): EncodedText {
  const row = text.length * text.width;
  const data = new Float32Array(row + text.data.length);
  data.set(text.data, row);
  return { ...text, data, rows: text.rows + 1 };
}

/** SDXL text-to-image over ONNX Runtime: SD's pipeline with SDXL's conditioning. */
export class StableDiffusionXLPipeline extends StableDiffusionPipeline {
  override readonly family: string = STABLE_DIFFUSION_XL.pipelineClasses[0];

  /**
   * Loads both tokenizers and text encoders, the UNet and the VAE decoder of an SDXL model
   * folder. Defaults: the UNet's `sample_size` × 8 (1024² for SDXL, 512² for SDXL-Turbo), then
   * diffusers' 50 steps at guidance 5, or 1 step without guidance for a distilled model's
   * trailing-spaced Euler scheduler; `defaults` (the registry's) override them.
   */
  static override async load(
    graphs: GraphSource,
    defaults: Partial<PipelineDefaults> = {},
    decode: VaeDecodeSettings = {},
  ): Promise<StableDiffusionXLPipeline> {
    const { dir, backend } = graphs;
    const index = await readJsonFile<Record<string, unknown>>(`${dir}/model_index.json`);
    const tokenizer = await ClipTokenizer.load(`${dir}/tokenizer`);
    const tokenizer2 = await ClipTokenizer.load(`${dir}/tokenizer_2`);
    if (tokenizer.maxLength !== tokenizer2.maxLength) {
      throw new InterfaceMismatchError(
        `The model's parts do not fit together: tokenizer/ gives ${tokenizer.maxLength} tokens and tokenizer_2/ ${tokenizer2.maxLength}, whose features SDXL joins token by token`,
      );
    }
    const textConfig = await readOptionalConfig(`${dir}/text_encoder/config.json`);
    const textConfig2 = await readOptionalConfig(`${dir}/text_encoder_2/config.json`);
    const folder = await openSdFolder(graphs);
    const label = "text_encoder/model.onnx", label2 = "text_encoder_2/model.onnx";
    const session = await graphs.open("text_encoder");
    const session2 = await graphs.open("text_encoder_2");
    const layers = [
      ClipEncoder.penultimate(label, session),
      ClipEncoder.penultimate(label2, session2),
    ] as const;
    const conditioning = new SdxlConditioning(
      new ClipEncoder(label, backend, tokenizer, session, [layers[0]]),
      new ClipEncoder(label2, backend, tokenizer2, session2, [layers[1], "text_embeds"]),
      layers,
      index.force_zeros_for_empty_prompt !== false,
    );
    const distilled = isDistilled(folder.schedulerConfig);
    const pipeline = new StableDiffusionXLPipeline(
      sdParts(graphs, folder, conditioning, decode, {
        ...(distilled ? STABLE_DIFFUSION_XL.distilledDefaults : STABLE_DIFFUSION_XL.defaults),
        ...defaults,
      }),
    );
    const { unet, unetConfig } = folder;
    const sum = (a: unknown, b: unknown) =>
      typeof a === "number" && typeof b === "number" ? a + b : undefined;
    checkAgreement("the text features' width", [
      {
        source: "text_encoder/config.json + text_encoder_2/config.json hidden_size",
        value: sum(textConfig.hidden_size, textConfig2.hidden_size),
      },
      {
        source: `${label} ${layers[0]}[2] + ${label2} ${layers[1]}[2]`,
        value: sum(
          axisStatement(label, session, layers[0], 2).value,
          axisStatement(label2, session2, layers[1], 2).value,
        ),
      },
      configStatement("unet/config.json", unetConfig, "cross_attention_dim"),
      axisStatement("unet/model.onnx", unet, "encoder_hidden_states", 2),
    ]);
    const timeWidth = unetConfig.addition_time_embed_dim;
    const projectionInput = unetConfig.projection_class_embeddings_input_dim;
    checkAgreement("the pooled text embedding's width", [
      configStatement("text_encoder_2/config.json", textConfig2, "projection_dim"),
      axisStatement(label2, session2, "text_embeds", 1),
      {
        source:
          "unet/config.json projection_class_embeddings_input_dim − 6 × addition_time_embed_dim",
        value: typeof timeWidth === "number" && typeof projectionInput === "number"
          ? projectionInput - 6 * timeWidth
          : undefined,
      },
      axisStatement("unet/model.onnx", unet, "text_embeds", 1),
    ]);
    return pipeline;
  }
}
