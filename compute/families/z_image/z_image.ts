/**
 * Z-Image(-Turbo) text-to-image over ONNX graphs (contract: docs/onnx-interfaces.md), following
 * diffusers' `ZImagePipeline.__call__`:
 *
 * 1. check inputs (multiples of 16); 2. wrap each prompt in the Qwen3 chat template, encode it
 * unpadded and take the second-to-last layer; 3. draw `randn(B,16,h,w)`; 4. σ = linspace(1, 1/N, N)
 * with static shift; 5. per step run the transformer at `1 − σ`, take `noise = −output`, apply
 * CFG when `guidance_scale > 0` (truncation, optional normalisation), then an Euler step;
 * 6. decode `latents / scaling_factor + shift_factor`.
 *
 * @module
 */
import { InvalidInputError } from "../../errors.ts";
import { type Backend, readFloat32, type Session, type Tensor } from "../../backends/backend.ts";
import { exists, readJsonFile } from "../../model/files.ts";
import {
  axisStatement,
  checkAgreement,
  configStatement,
  matchInputs,
  matchOutput,
} from "../../model/graph_interface.ts";
import { graphPath, type GraphSource } from "../../model/model_folder.ts";
import { editMode, editSetup, VaeEncoder } from "../../pipelines/edit.ts";
import { PipelineBase } from "../../pipelines/base.ts";
import { decodeLatents, decoderRun, type VaeDecodeSettings } from "../../pipelines/vae_decode.ts";
import { randnFrom } from "../../random.ts";
import { createScheduler, type Scheduler, type SchedulerConfig } from "../../schedulers/mod.ts";
import { linspace } from "../../schedulers/scheduler.ts";
import { QwenTokenizer } from "../../tokenizers/qwen_tokenizer.ts";
import type {
  BatchOutcome,
  CancelSignal,
  GenerateOptions,
  Pipeline,
  PipelineDefaults,
  RgbImage,
} from "../../pipelines/pipeline.ts";
import {
  checkGenerateOptions,
  concatAll,
  type EncodedText,
  TextRows,
  toRgbImages,
} from "../../pipelines/common.ts";
import {
  createMembers,
  denoise,
  eachLive,
  type Member,
  type MemberSetup,
  outcomes,
  type RunParams,
} from "../../pipelines/denoising_loop.ts";
import { latentsToRgb, previewFits } from "../../pipelines/preview.ts";
import { SignalGraphs } from "../../pipelines/signal_graph.ts";
import { Z_IMAGE } from "./mod.ts";

const CHAT_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n";
const MAX_SEQUENCE_LENGTH = 512;
/** The Flux autoencoder's tile in latents (its `sample_size` 1024 / 8), diffusers' default. */
const FLUX_VAE_TILE_LATENT = 128;
const CHANNELS = 16;
const VAE_SCALE = 8;
/** The Flux autoencoder's latent normalisation: diffusers' default for a config without it. */
const FLUX_SCALING = 0.3611, FLUX_SHIFT = 0.1159;

/** Latent height and width: two latent cells per 16-pixel patch. */
function latentSize(width: number, height: number): [number, number] {
  return [2 * Math.floor(height / 16), 2 * Math.floor(width / 16)];
}

/**
 * Z-Image CFG for one sample: `pred = pos + g·(pos − neg)`, then, with normalisation c > 0,
 * `pred *= ‖pos‖·c/‖pred‖` when `‖pred‖ > ‖pos‖·c` (norms over the whole sample).
 */
export function zImageGuidance(
  pos: Float32Array,
  neg: Float32Array,
  scale: number,
  normalization: number,
): Float32Array {
  const out = pos.map((p, i) => p + scale * (p - neg[i]));
  if (normalization > 0) {
    const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    const limit = norm(pos) * normalization, actual = norm(out);
    if (actual > limit) out.forEach((v, i) => (out[i] = v * (limit / actual)));
  }
  return out;
}

/** Z-Image over ONNX Runtime. */
export class ZImagePipeline extends PipelineBase implements Pipeline {
  readonly family: string = Z_IMAGE.pipelineClasses[0];
  readonly sizeMultiple: number = Z_IMAGE.sizeMultiple;
  /** 1 when the folder has a VAE encoder (image-to-image and inpainting), else 0. */
  readonly maxEditImages: number;

  private constructor(
    private readonly backend: Backend,
    private readonly tokenizer: QwenTokenizer,
    private readonly textEncoder: Session,
    private readonly transformer: Session,
    private readonly vaeDecoder: Session,
    private readonly scheduler: Scheduler,
    private readonly vae: { scaling: number; shift: number; decode: VaeDecodeSettings },
    readonly defaults: PipelineDefaults,
    /** The step cache's signal sub-graphs of the transformer. */
    private readonly signals: SignalGraphs,
    private readonly vaeEncoder?: VaeEncoder,
  ) {
    super();
    this.maxEditImages = vaeEncoder ? 1 : 0;
    matchInputs("text_encoder/model.onnx", textEncoder, [
      { name: "input_ids", types: ["int64"], ranks: [2] },
      { name: "attention_mask", types: ["int64"], ranks: [2] },
    ]);
    matchOutput("text_encoder/model.onnx", textEncoder, "encoder_hidden_state", ["float32"]);
    matchInputs("transformer/model.onnx", transformer, [
      { name: "hidden_states", types: ["float32"], ranks: [5] },
      { name: "timestep", types: ["float32"], ranks: [1] },
      { name: "encoder_hidden_states", types: ["float32"], ranks: [3] },
    ]);
    matchOutput("transformer/model.onnx", transformer, "unified_results", ["float32"]);
    matchInputs("vae_decoder/model.onnx", vaeDecoder, [{
      name: "latent_sample",
      types: ["float32"],
      ranks: [4],
    }]);
    matchOutput("vae_decoder/model.onnx", vaeDecoder, "sample", ["float32"]);
  }

  /** Loads a Z-Image model folder. */
  static async load(
    graphs: GraphSource,
    defaults: Partial<PipelineDefaults> = {},
    decode: VaeDecodeSettings = {},
  ): Promise<ZImagePipeline> {
    const { dir, backend } = graphs;
    const tokenizer = await QwenTokenizer.load(`${dir}/tokenizer`);
    const schedulerConfig = await readJsonFile<SchedulerConfig>(
      `${dir}/scheduler/scheduler_config.json`,
    );
    const vae = await readJsonFile<
      { scaling_factor?: number; shift_factor?: number } & Record<string, unknown>
    >(`${dir}/vae_decoder/config.json`);
    const optionalConfig = (part: string) =>
      readJsonFile<Record<string, unknown>>(`${dir}/${part}/config.json`)
        .catch(() => ({} as Record<string, unknown>));
    const textConfig = await optionalConfig("text_encoder");
    const transformerConfig = await optionalConfig("transformer");
    const pipeline = new ZImagePipeline(
      backend,
      tokenizer,
      await graphs.open("text_encoder"),
      await graphs.open("transformer"),
      await graphs.open("vae_decoder"),
      createScheduler(schedulerConfig),
      {
        scaling: vae.scaling_factor ?? FLUX_SCALING,
        shift: vae.shift_factor ?? FLUX_SHIFT,
        decode,
      },
      { ...Z_IMAGE.defaults, ...defaults },
      new SignalGraphs(backend, graphPath(dir, "transformer")),
      await exists(graphPath(dir, "vae_encoder"))
        ? new VaeEncoder(await graphs.open("vae_encoder"), backend)
        : undefined,
    );
    const dit = (name: string, axis: number) =>
      axisStatement("transformer/model.onnx", pipeline.transformer, name, axis);
    checkAgreement("the latent channels", [
      { source: "Z-Image's latent channels", value: CHANNELS },
      configStatement("transformer/config.json", transformerConfig, "in_channels"),
      dit("hidden_states", 1),
      dit("unified_results", 1),
      configStatement("vae_decoder/config.json", vae, "latent_channels"),
      axisStatement("vae_decoder/model.onnx", pipeline.vaeDecoder, "latent_sample", 1),
    ]);
    checkAgreement("the text features' width", [
      configStatement("text_encoder/config.json", textConfig, "hidden_size"),
      axisStatement("text_encoder/model.onnx", pipeline.textEncoder, "encoder_hidden_state", 2),
      configStatement("transformer/config.json", transformerConfig, "cap_feat_dim"),
      dit("encoder_hidden_states", 2),
    ]);
    return pipeline;
  }

  get device() {
    return this.backend.device;
  }

  /** Caption features of one prompt, unpadded: `[1, S, D]` (the export takes no mask). */
  async #encode(prompt: string): Promise<EncodedText> {
    const ids = this.tokenizer.encode(CHAT_TEMPLATE.replace("{}", prompt), MAX_SEQUENCE_LENGTH);
    const out = await this.textEncoder.run({
      input_ids: this.backend.tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: this.backend.tensor("int64", new BigInt64Array(ids.length).fill(1n), [
        1,
        ids.length,
      ]),
    });
    const [, length, width] = out.encoder_hidden_state.dims;
    const data = await readFloat32(out.encoder_hidden_state);
    for (const tensor of Object.values(out)) tensor.dispose();
    return { data, rows: 1, length, width };
  }

  /** Captions are unpadded, so their token counts are part of the key. */
  batchKey(options: GenerateOptions): string {
    const { params, run } = this.#setup(options);
    const tokens = (text: string) =>
      this.tokenizer.encode(CHAT_TEMPLATE.replace("{}", text), MAX_SEQUENCE_LENGTH).length;
    const cfg = params.guidanceScale > 0;
    return JSON.stringify([
      params.width,
      params.height,
      params.steps,
      cfg && (options.cfgTruncation ?? 1),
      tokens(options.prompt),
      cfg && tokens(options.negativePrompt ?? ""),
      editMode(options.edit),
      run.timesteps.length,
    ]);
  }

  /** 1. Check inputs; 3. latents `randn(n,16,h,w)`; 4. σ = linspace(1, 1/N, N), shifted. */
  #setup(options: GenerateOptions): MemberSetup {
    const width = options.width ?? this.defaults.width;
    const height = options.height ?? this.defaults.height;
    const steps = options.steps ?? this.defaults.steps;
    const guidanceScale = options.guidanceScale ?? this.defaults.guidanceScale;
    const n = options.n ?? 1;
    const { cfgTruncation = 1, cfgNormalization = 0 } = options;
    if (!(cfgTruncation >= 0 && cfgTruncation <= 1)) {
      throw new InvalidInputError(`cfgTruncation must be within [0, 1], got ${cfgTruncation}`);
    }
    if (!(cfgNormalization >= 0)) {
      throw new InvalidInputError(`cfgNormalization must be >= 0, got ${cfgNormalization}`);
    }
    checkGenerateOptions(
      { width, height, steps, guidanceScale, n },
      this.family,
      this.sizeMultiple,
    );
    const [lh, lw] = latentSize(width, height);
    const params = {
      width: lw * VAE_SCALE,
      height: lh * VAE_SCALE,
      steps,
      guidanceScale,
      n,
      scheduler: this.scheduler.name,
    };
    const full = this.scheduler.setTimesteps(steps, { sigmas: linspace(1, 1 / steps, steps) });
    if (options.edit) {
      const encoder = this.vaeEncoder;
      if (!encoder) {
        throw new InvalidInputError(
          `${this.family}: this model cannot edit images (its folder has no vae_encoder)`,
        );
      }
      // diffusers' ZImageImg2ImgPipeline / ZImageInpaintPipeline: `(z − shift)·scale`.
      const { scaling, shift } = this.vae;
      return editSetup(options.edit, {
        full,
        steps,
        n,
        width: params.width,
        height: params.height,
        scale: VAE_SCALE,
        channels: CHANNELS,
        rounding: "flow",
        encode: async (pixels, generator) =>
          (await encoder.encode(pixels, params.width, params.height, generator)).map((z) =>
            (z - shift) * scaling
          ),
        pureNoiseAtFullStrength: false,
      }, params);
    }
    return {
      params,
      run: full,
      initialLatents: (generator) => randnFrom(generator, [n, CHANNELS, lh, lw]),
    };
  }

  async generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]> {
    // 1. Check inputs; 3. initial latents from each request's generator.
    const members = await createMembers<{ pos: EncodedText; neg?: EncodedText }>(
      batch,
      (o) => this.#setup(o),
    );
    // 2. Captions in the chat template; the negative one only when guidance is on.
    await eachLive(members, "textEncodeMs", async (m) => {
      m.text = {
        pos: await this.#encode(m.options.prompt),
        neg: m.params.guidanceScale > 0
          ? await this.#encode(m.options.negativePrompt ?? "")
          : undefined,
      };
    });
    // 5. Per step: the transformer at 1 − σ on every request's latents (and on the negative
    // captions while guidance applies), CFG per sample, noise = −output.
    const posRows = new TextRows(), negRows = new TextRows();
    /** The transformer's inputs at step `i` with `captions`. */
    const feeds = (active: Member[], i: number, captions: Tensor) => {
      const { params, run } = active[0];
      const [lh, lw] = latentSize(params.width, params.height);
      const rows = active.reduce((sum, m) => sum + m.params.n, 0);
      const latents = concatAll(active.map((m) => m.latents));
      return {
        hidden_states: this.backend.tensor("float32", latents, [rows, CHANNELS, 1, lh, lw]),
        timestep: this.backend.tensor(
          "float32",
          new Float32Array(rows).fill(1 - run.sigmas[i]), // (1000 − t)/1000
          [rows],
        ),
        encoder_hidden_states: captions,
      };
    };
    await denoise(members, {
      // The step cache's signal from the prompt's branch (the one that always runs).
      signal: async (active, i, cache) =>
        await (await this.signals.get(cache))?.run(
          feeds(active, i, posRows.tensor(active, (m) => m.text!.pos, this.backend, "float32")),
        ),
      predict: async (active, i) => {
        const { params, run } = active[0];
        const [lh, lw] = latentSize(params.width, params.height);
        const modelT = 1 - run.sigmas[i]; // (1000 − t)/1000
        const predict = async (captions: Tensor) => {
          const out = await this.transformer.run(feeds(active, i, captions));
          const r = await readFloat32(out.unified_results);
          out.unified_results.dispose();
          return r;
        };
        const guided = active[0].params.guidanceScale > 0 &&
          modelT <= (active[0].options.cfgTruncation ?? 1);
        // Both branches asked at once: with --cfg-parallel-size 2 they run on two sessions.
        const [pos, neg] = await Promise.all([
          predict(posRows.tensor(active, (m) => m.text!.pos, this.backend, "float32")),
          guided
            ? predict(negRows.tensor(active, (m) => m.text!.neg!, this.backend, "float32"))
            : undefined,
        ]);
        const perSample = CHANNELS * lh * lw;
        let offset = 0;
        return active.map((m) => {
          const pred = new Float32Array(m.latents.length);
          for (let b = 0; b < m.params.n; b++, offset += perSample) {
            const sample = pos.subarray(offset, offset + perSample);
            pred.set(
              neg
                ? zImageGuidance(
                  sample,
                  neg.subarray(offset, offset + perSample),
                  m.params.guidanceScale,
                  m.options.cfgNormalization ?? 0,
                )
                : sample,
              b * perSample,
            );
          }
          return pred.map((v) => -v);
        });
      },
      preview: async (m, x0) => {
        const [lh, lw] = latentSize(m.params.width, m.params.height);
        const vae = { scalingFactor: this.vae.scaling, shiftFactor: this.vae.shift };
        if (previewFits(Z_IMAGE.preview, vae)) {
          return latentsToRgb(x0, m.params.n, lh, lw, Z_IMAGE.preview.factors);
        }
        return await this.#decode(x0, m.params, m.options.signal);
      },
    });
    // 6. Decode `latents / scaling_factor + shift_factor`.
    await eachLive(members, "decodeMs", async (m) => {
      m.images = await this.#decode(m.latents, m.params, m.options.signal);
    });
    return outcomes(members);
  }

  async #decode(
    latents: Float32Array,
    params: RunParams,
    signal?: CancelSignal,
  ): Promise<RgbImage[]> {
    const [lh, lw] = latentSize(params.width, params.height);
    const z = latents.map((v) => v / this.vae.scaling + this.vae.shift);
    const pixels = await decodeLatents(
      z,
      { n: params.n, channels: CHANNELS, h: lh, w: lw, scale: VAE_SCALE },
      decoderRun(this.vaeDecoder, this.backend, "float32", (n, h, w) => [n, CHANNELS, h, w]),
      this.vae.decode,
      FLUX_VAE_TILE_LATENT,
      signal,
    );
    return toRgbImages(pixels, params.n, lw * VAE_SCALE, lh * VAE_SCALE);
  }

  protected held() {
    return [this.textEncoder, this.transformer, this.vaeDecoder, this.vaeEncoder, this.signals];
  }
}
