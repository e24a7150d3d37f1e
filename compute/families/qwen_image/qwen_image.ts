/**
 * Qwen-Image text-to-image over ONNX graphs (contract: docs/onnx-interfaces.md), following
 * diffusers' `QwenImagePipeline.__call__`:
 *
 * 1. check inputs (sizes multiple of 16); 2. wrap prompt and negative prompt in the template,
 * encode them in one padded batch, drop the first 34 tokens, cap at 512; 3. draw
 * `randn(B,1,16,h,w)` and pack it; 4. σ = linspace(1, 1/N, N) with μ from the token count;
 * 5. per step run the transformer on `[cond…, neg…]` and apply true CFG with the norm rescale;
 * 6. unpack, de-normalise with `latents_mean/std`, decode one frame, map to 8-bit RGB.
 *
 * @module
 */
import { InvalidInputError } from "../../errors.ts";
import { type Backend, readFloat32, type Session, type Tensor } from "../../backends/backend.ts";
import { ModelLoadError } from "../../errors.ts";
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
import {
  calculateShift,
  createScheduler,
  type Scheduler,
  type SchedulerConfig,
} from "../../schedulers/mod.ts";
import { linspace } from "../../schedulers/scheduler.ts";
import { QwenTokenizer } from "../../tokenizers/qwen_tokenizer.ts";
import { packLatents, unpackLatents } from "../../pipelines/latent_packing.ts";
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
import { QWEN_IMAGE } from "./mod.ts";

type QwenMember = Member<EncodedPrompts>;

const TEMPLATE =
  "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n";
/** diffusers `prompt_template_encode_start_idx`. */
const DROP_TOKENS = 34;
const MAX_SEQUENCE_LENGTH = 512;
const VAE_SCALE = 8;
const Z_DIM = 16;
/** AutoencoderKLQwenImage's tile in latents (`tile_sample_min_height` 256 / 8). */
const QWEN_VAE_TILE_LATENT = 32;

/** Text features of a request's prompts after dropping the template prefix, right-padded. */
interface EncodedPrompts extends EncodedText {
  /** 1 for a real token, 0 for padding; `rows × length`. */
  mask: number[];
}

/** Tokens a templated prompt keeps after the drop and the cap. */
function keptTokens(ids: readonly number[]): number {
  return Math.min(Math.max(ids.length - DROP_TOKENS, 0), MAX_SEQUENCE_LENGTH);
}

/** Latent height and width: two latent cells per 16-pixel patch. */
function latentSize(width: number, height: number): [number, number] {
  return [2 * Math.floor(height / 16), 2 * Math.floor(width / 16)];
}

/**
 * True CFG with diffusers' norm rescale: `comb = neg + s·(cond − neg)`, then each token's
 * vector is scaled to the norm of `cond`'s (norms over the last axis of `features`).
 */
export function trueCfg(
  cond: Float32Array,
  neg: Float32Array,
  scale: number,
  features: number,
): Float32Array {
  const out = new Float32Array(cond.length);
  for (let t = 0; t < cond.length; t += features) {
    let condNorm = 0, combNorm = 0;
    for (let k = t; k < t + features; k++) {
      const comb = neg[k] + scale * (cond[k] - neg[k]);
      out[k] = comb;
      condNorm += cond[k] * cond[k];
      combNorm += comb * comb;
    }
    const ratio = Math.sqrt(condNorm) / Math.sqrt(combNorm);
    for (let k = t; k < t + features; k++) out[k] *= ratio;
  }
  return out;
}

/** Qwen-Image over ONNX Runtime. */
export class QwenImagePipeline extends PipelineBase implements Pipeline {
  readonly family: string = QWEN_IMAGE.pipelineClasses[0];
  readonly sizeMultiple: number = QWEN_IMAGE.sizeMultiple;
  /** 1 when the folder has a VAE encoder (image-to-image and inpainting), else 0. */
  readonly maxEditImages: number;

  private constructor(
    private readonly backend: Backend,
    private readonly tokenizer: QwenTokenizer,
    private readonly textEncoder: Session,
    private readonly transformer: Session,
    private readonly vaeDecoder: Session,
    private readonly scheduler: Scheduler,
    private readonly latentsMean: number[],
    private readonly latentsStd: number[],
    readonly defaults: PipelineDefaults & { trueCfgScale: number },
    private readonly decode: VaeDecodeSettings,
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
    matchOutput("text_encoder/model.onnx", textEncoder, "last_hidden_state", ["float32"]);
    const optional = new Set(["encoder_hidden_states_mask", "img_height", "img_width"]);
    matchInputs("transformer/model.onnx", transformer, [
      { name: "hidden_states", types: ["float32"], ranks: [3] },
      { name: "timestep", types: ["float32"], ranks: [1] },
      { name: "encoder_hidden_states", types: ["float32"], ranks: [3] },
      ...transformer.inputs.filter((t) => optional.has(t.name)).map((t) =>
        t.name === "encoder_hidden_states_mask"
          ? { name: t.name, types: ["int64"], ranks: [2] }
          : { name: t.name, types: ["int64"], ranks: [0] }
      ),
    ]);
    matchOutput("transformer/model.onnx", transformer, "out_hidden_states", ["float32"]);
    matchInputs("vae_decoder/model.onnx", vaeDecoder, [{
      name: "latent_sample",
      types: ["float32"],
      ranks: [5],
    }]);
    matchOutput("vae_decoder/model.onnx", vaeDecoder, "sample", ["float32"]);
  }

  /** Loads a Qwen-Image model folder. */
  static async load(
    graphs: GraphSource,
    defaults: Partial<PipelineDefaults> = {},
    decode: VaeDecodeSettings = {},
  ): Promise<QwenImagePipeline> {
    const { dir, backend } = graphs;
    const tokenizer = await QwenTokenizer.load(`${dir}/tokenizer`);
    const schedulerConfig = await readJsonFile<SchedulerConfig>(
      `${dir}/scheduler/scheduler_config.json`,
    );
    const vae = await readJsonFile<
      { latents_mean?: number[]; latents_std?: number[] } & Record<string, unknown>
    >(`${dir}/vae_decoder/config.json`);
    if (vae.latents_mean?.length !== Z_DIM || vae.latents_std?.length !== Z_DIM) {
      throw new ModelLoadError(
        `Cannot load ${dir}/vae_decoder/config.json: expected latents_mean and latents_std of ${Z_DIM} values`,
      );
    }
    const optionalConfig = (part: string) =>
      readJsonFile<Record<string, unknown>>(`${dir}/${part}/config.json`)
        .catch(() => ({} as Record<string, unknown>));
    const textConfig = await optionalConfig("text_encoder");
    const transformerConfig = await optionalConfig("transformer");
    const pipeline = new QwenImagePipeline(
      backend,
      tokenizer,
      await graphs.open("text_encoder"),
      await graphs.open("transformer"),
      await graphs.open("vae_decoder"),
      createScheduler(schedulerConfig),
      vae.latents_mean,
      vae.latents_std,
      { ...QWEN_IMAGE.defaults, ...defaults },
      decode,
      new SignalGraphs(backend, graphPath(dir, "transformer")),
      await exists(graphPath(dir, "vae_encoder"))
        ? new VaeEncoder(await graphs.open("vae_encoder"), backend)
        : undefined,
    );
    const dit = (name: string, axis: number) =>
      axisStatement("transformer/model.onnx", pipeline.transformer, name, axis);
    const ditField = (key: string) =>
      configStatement("transformer/config.json", transformerConfig, key);
    checkAgreement("the latent channels", [
      { source: "Qwen-Image's latent channels", value: Z_DIM },
      ditField("out_channels"),
      configStatement("vae_decoder/config.json", vae, "z_dim"),
      axisStatement("vae_decoder/model.onnx", pipeline.vaeDecoder, "latent_sample", 1),
    ]);
    checkAgreement("the packed latent channels (2×2 patches)", [
      { source: "Qwen-Image's packed channels", value: Z_DIM * 4 },
      ditField("in_channels"),
      dit("hidden_states", 2),
      dit("out_hidden_states", 2),
    ]);
    checkAgreement("the text features' width", [
      configStatement("text_encoder/config.json", textConfig, "hidden_size"),
      axisStatement("text_encoder/model.onnx", pipeline.textEncoder, "last_hidden_state", 2),
      ditField("joint_attention_dim"),
      dit("encoder_hidden_states", 2),
    ]);
    return pipeline;
  }

  get device() {
    return this.backend.device;
  }

  /** Encodes prompts with the template; drops the first 34 tokens of each, as diffusers does. */
  async #encode(prompts: string[]): Promise<EncodedPrompts> {
    const rows = prompts.map((p) =>
      this.tokenizer.encode(TEMPLATE.replace("{}", p), MAX_SEQUENCE_LENGTH + DROP_TOKENS)
    );
    const { ids, mask, length } = this.tokenizer.padBatch(rows);
    const shape = [prompts.length, length];
    const out = await this.textEncoder.run({
      input_ids: this.backend.tensor("int64", BigInt64Array.from(ids, BigInt), shape),
      attention_mask: this.backend.tensor("int64", BigInt64Array.from(mask, BigInt), shape),
    });
    const hidden = await readFloat32(out.last_hidden_state);
    const width = out.last_hidden_state.dims[2];
    out.last_hidden_state.dispose();
    const kept = rows.map(keptTokens);
    const keptLength = Math.max(1, ...kept);
    const features = new Float32Array(prompts.length * keptLength * width);
    const keptMask: number[] = [];
    rows.forEach((_, b) => {
      for (let t = 0; t < keptLength; t++) {
        const valid = t < kept[b];
        keptMask.push(valid ? 1 : 0);
        if (!valid) continue;
        const src = (b * length + DROP_TOKENS + t) * width;
        features.set(hidden.subarray(src, src + width), (b * keptLength + t) * width);
      }
    });
    return { data: features, rows: prompts.length, mask: keptMask, length: keptLength, width };
  }

  /** The padded caption length changes the transformer's input, so it is part of the key. */
  batchKey(options: GenerateOptions): string {
    const { params, run } = this.#setup(options);
    const cfg = this.#cfg(options);
    const kept = this.#prompts(options, cfg).map((p) =>
      keptTokens(
        this.tokenizer.encode(TEMPLATE.replace("{}", p), MAX_SEQUENCE_LENGTH + DROP_TOKENS),
      )
    );
    return JSON.stringify([
      params.width,
      params.height,
      params.steps,
      cfg,
      Math.max(1, ...kept),
      editMode(options.edit),
      run.timesteps.length,
    ]);
  }

  #cfg(options: GenerateOptions): boolean {
    // diffusers: true CFG when true_cfg_scale > 1 and a negative prompt exists (default "").
    return (options.trueCfgScale ?? this.defaults.trueCfgScale) > 1;
  }

  #prompts(options: GenerateOptions, cfg: boolean): string[] {
    return cfg ? [options.prompt, options.negativePrompt ?? ""] : [options.prompt];
  }

  /** 1. Check inputs; 3. packed latents; 4. σ = linspace(1, 1/N, N) shifted by μ(tokens). */
  #setup(options: GenerateOptions): MemberSetup {
    const width = options.width ?? this.defaults.width;
    const height = options.height ?? this.defaults.height;
    const steps = options.steps ?? this.defaults.steps;
    const guidanceScale = options.guidanceScale ?? this.defaults.guidanceScale;
    const trueCfgScale = options.trueCfgScale ?? this.defaults.trueCfgScale;
    const n = options.n ?? 1;
    checkGenerateOptions(
      { width, height, steps, guidanceScale, n },
      this.family,
      this.sizeMultiple,
    );
    if (!Number.isFinite(trueCfgScale) || trueCfgScale < 0) {
      throw new InvalidInputError(
        `true_cfg_scale must be a finite number >= 0, got ${trueCfgScale}`,
      );
    }
    const [lh, lw] = latentSize(width, height);
    const mu = calculateShift((lh / 2) * (lw / 2), this.scheduler.config);
    const params = {
      width: lw * VAE_SCALE,
      height: lh * VAE_SCALE,
      steps,
      guidanceScale,
      n,
      scheduler: this.scheduler.name,
    };
    const full = this.scheduler.setTimesteps(steps, {
      sigmas: linspace(1, 1 / steps, steps),
      mu,
    });
    if (options.edit) {
      const encoder = this.vaeEncoder;
      if (!encoder) {
        throw new InvalidInputError(
          `${this.family}: this model cannot edit images (its folder has no vae_encoder)`,
        );
      }
      // diffusers' QwenImageImg2ImgPipeline / QwenImageInpaintPipeline: per channel
      // `(z − latents_mean) · (1 / latents_std)`, then 2×2 packing.
      const plane = lh * lw;
      const inverseStd = this.latentsStd.map((s) => Math.fround(1 / s));
      return editSetup(options.edit, {
        full,
        steps,
        n,
        width: params.width,
        height: params.height,
        scale: VAE_SCALE,
        channels: Z_DIM,
        rounding: "flow",
        encode: async (pixels, generator) =>
          (await encoder.encode(pixels, params.width, params.height, generator)).map((z, k) => {
            const c = Math.floor(k / plane);
            return Math.fround(z - this.latentsMean[c]) * inverseStd[c];
          }),
        pack: (x, count) => packLatents(x, count, Z_DIM, lh, lw),
        pureNoiseAtFullStrength: false,
      }, params);
    }
    return {
      params,
      run: full,
      // Latents [n,1,16,h,w] (the frame axis of size 1 keeps the memory order of [n,16,h,w]).
      initialLatents: (generator) =>
        packLatents(randnFrom(generator, [n, 1, Z_DIM, lh, lw]), n, Z_DIM, lh, lw),
    };
  }

  async generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]> {
    // 1. Check inputs; 3.–4. latents and schedule per request.
    const members = await createMembers<EncodedPrompts>(batch, (o) => this.#setup(o));
    // 2. Prompt (and negative prompt, for true CFG) in one padded batch per request.
    await eachLive(members, "textEncodeMs", async (m) => {
      m.text = await this.#encode(this.#prompts(m.options, this.#cfg(m.options)));
    });
    // 5. Per step: the transformer on `[cond × n, neg × n]` of every request, true CFG per request.
    const textRows = new TextRows();
    const declared = new Set(this.transformer.inputs.map((i) => i.name));
    // The transformer's inputs of step i, built once for the step cache's signal and the call.
    let built: { i: number; active: readonly Member[]; feeds: Record<string, Tensor> } | undefined;
    const feedsOf = (active: QwenMember[], i: number) => {
      if (built?.i === i && built.active === active) return built.feeds;
      const [lh, lw] = latentSize(active[0].params.width, active[0].params.height);
      const tokens = (lh / 2) * (lw / 2), packed = Z_DIM * 4;
      const cfg = this.#cfg(active[0].options);
      const input = concatAll(active.flatMap((m) => cfg ? [m.latents, m.latents] : [m.latents]));
      const rows = active.reduce((sum, m) => sum + m.text!.rows * m.params.n, 0);
      const { length } = active[0].text!;
      const sigma = active[0].run.timesteps[i] / 1000;
      const feeds: Record<string, Tensor> = {
        encoder_hidden_states: textRows.tensor(active, (m) => m.text!, this.backend, "float32"),
        hidden_states: this.backend.tensor("float32", input, [rows, tokens, packed]),
        timestep: this.backend.tensor("float32", new Float32Array(rows).fill(sigma), [rows]),
      };
      if (declared.has("encoder_hidden_states_mask")) {
        const mask = active.flatMap((m) =>
          Array.from({ length: m.text!.rows }, (_, r) => {
            const row = m.text!.mask.slice(r * length, (r + 1) * length);
            return Array.from({ length: m.params.n }, () => row).flat();
          }).flat()
        );
        feeds.encoder_hidden_states_mask = this.backend.tensor(
          "int64",
          BigInt64Array.from(mask, BigInt),
          [rows, length],
        );
      }
      if (declared.has("img_height")) {
        feeds.img_height = this.backend.tensor("int64", BigInt64Array.of(BigInt(lh / 2)), []);
      }
      if (declared.has("img_width")) {
        feeds.img_width = this.backend.tensor("int64", BigInt64Array.of(BigInt(lw / 2)), []);
      }
      built = { i, active, feeds };
      return feeds;
    };
    await denoise(members, {
      signal: async (active, i, cache) =>
        await (await this.signals.get(cache))?.run(feedsOf(active, i)),
      predict: async (active, i) => {
        const cfg = this.#cfg(active[0].options);
        const packed = Z_DIM * 4;
        const feeds = feedsOf(active, i);
        const out = await this.transformer.run(feeds);
        const v = await readFloat32(out.out_hidden_states);
        out.out_hidden_states.dispose();
        let offset = 0;
        return active.map((m) => {
          const size = m.latents.length;
          const own = v.subarray(offset, offset + size * (cfg ? 2 : 1));
          offset += own.length;
          const scale = m.options.trueCfgScale ?? this.defaults.trueCfgScale;
          return cfg
            ? trueCfg(own.subarray(0, size), own.subarray(size), scale, packed)
            : own.slice();
        });
      },
      preview: async (m, x0) => {
        if (previewFits(QWEN_IMAGE.preview, { latentsMean: this.latentsMean })) {
          const [lh, lw] = latentSize(m.params.width, m.params.height);
          return latentsToRgb(
            unpackLatents(x0, m.params.n, Z_DIM, lh, lw),
            m.params.n,
            lh,
            lw,
            QWEN_IMAGE.preview.factors,
          );
        }
        return await this.#decode(x0, m.params, m.options.signal);
      },
    });
    // 6. Unpack, de-normalise, decode one frame.
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
    const { n } = params;
    const [lh, lw] = latentSize(params.width, params.height);
    const z = unpackLatents(latents, n, Z_DIM, lh, lw);
    const plane = lh * lw;
    for (let b = 0; b < n; b++) {
      for (let c = 0; c < Z_DIM; c++) {
        const base = (b * Z_DIM + c) * plane;
        for (let k = 0; k < plane; k++) {
          z[base + k] = z[base + k] * this.latentsStd[c] + this.latentsMean[c];
        }
      }
    }
    // One frame: [n, C, 1, h, w] in, [n, 3, 1, H, W] out, laid out as [n, C, h, w] and [n, 3, H, W].
    const pixels = await decodeLatents(
      z,
      { n, channels: Z_DIM, h: lh, w: lw, scale: VAE_SCALE },
      decoderRun(
        this.vaeDecoder,
        this.backend,
        "float32",
        (count, h, w) => [count, Z_DIM, 1, h, w],
      ),
      this.decode,
      QWEN_VAE_TILE_LATENT,
      signal,
    );
    return toRgbImages(pixels, n, lw * VAE_SCALE, lh * VAE_SCALE);
  }

  protected held() {
    return [this.textEncoder, this.transformer, this.vaeDecoder, this.vaeEncoder, this.signals];
  }
}
