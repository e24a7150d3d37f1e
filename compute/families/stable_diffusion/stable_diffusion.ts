/**
 * The Stable Diffusion family (SD 1.x, 2.x, SD-Turbo) over ONNX graphs in the diffusers/Optimum
 * folder layout, following diffusers' `StableDiffusionPipeline.__call__`:
 *
 * 1. check inputs; 2. tokenize prompt and negative prompt; 3. encode them in one batch
 * `[negative × n, prompt × n]`; 4. draw latents with torch's CPU generator and scale them by
 * `init_noise_sigma`; 5. per timestep run the UNet once on the doubled batch and combine
 * `ε = ε_u + g·(ε_c − ε_u)`, then take a scheduler step; 6. decode `latents / scaling_factor`
 * and map `(x/2 + 0.5)` to 8-bit RGB.
 *
 * How prompts become the UNet's conditioning (steps 2–3) is a {@linkcode TextConditioning}: SD's
 * one CLIP encoder here, SDXL's two (and its extra UNet inputs) in `stable_diffusion_xl.ts`,
 * which reuses everything else.
 *
 * @module
 */
import {
  type Backend,
  readFloat32,
  type Session,
  type Tensor,
  type TensorInfo,
} from "../../backends/backend.ts";
import { InvalidInputError, ModelLoadError } from "../../errors.ts";
import { exists, readJsonFile } from "../../model/files.ts";
import {
  axisStatement,
  checkAgreement,
  configStatement,
  type InputSpec,
  matchInputs,
  matchOutput,
} from "../../model/graph_interface.ts";
import { graphPath, type GraphSource } from "../../model/model_folder.ts";
import { type Mt19937, randnFrom } from "../../random.ts";
import { createScheduler, type Scheduler, type SchedulerConfig } from "../../schedulers/mod.ts";
import { type SchedulerRun, startAt } from "../../schedulers/scheduler.ts";
import { ClipTokenizer } from "../../tokenizers/clip_tokenizer.ts";
import { asEncodedText, ClipEncoder } from "../../pipelines/clip_encoder.ts";
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
import {
  checkEdit,
  editMode,
  editSetup,
  editStart,
  imagePixels,
  latentMask,
  repeatImages,
  VaeEncoder,
} from "../../pipelines/edit.ts";
import type {
  BatchOutcome,
  CancelSignal,
  EditInput,
  GenerateOptions,
  Pipeline,
  PipelineDefaults,
} from "../../pipelines/pipeline.ts";
import { latentsToRgb, previewFits } from "../../pipelines/preview.ts";
import { SignalGraphs } from "../../pipelines/signal_graph.ts";
import { PipelineBase } from "../../pipelines/base.ts";
import { decodeLatents, decoderRun, type VaeDecodeSettings } from "../../pipelines/vae_decode.ts";
import { STABLE_DIFFUSION_XL } from "../stable_diffusion_xl/mod.ts";
import { STABLE_DIFFUSION } from "./mod.ts";

/** The float types a graph's tensors may have. */
export const FLOAT = ["float32", "float16"] as const;
/** VAE downsampling factor of every SD-family autoencoder (`2 ** (len(block_out_channels) - 1)`). */
export const VAE_SCALE = 8;
/**
 * Latent→RGB previews of the autoencoders this pipeline meets, told apart by the scaling factor,
 * which identifies the latent space: SD 1.x/2.x's and SDXL's.
 */
const PREVIEWS = [STABLE_DIFFUSION.preview, STABLE_DIFFUSION_XL.preview];

/** A request's encoded prompts: two rows (negative, then prompt) with guidance, else one. */
export interface SdText {
  /** The UNet's `encoder_hidden_states`. */
  hidden: EncodedText;
  /** Further UNet inputs by name, one vector per row (SDXL's `text_embeds` and `time_ids`). */
  extra: Record<string, EncodedText>;
}

type SdMember = Member<SdText>;

/** What one request's prompts are encoded for. */
export interface ConditioningRequest {
  prompt: string;
  negativePrompt?: string;
  /** Classifier-free guidance runs: encode the negative row too. */
  cfg: boolean;
  width: number;
  height: number;
}

/** How prompts become the UNet's conditioning (diffusers' `encode_prompt` and what follows it). */
export interface TextConditioning {
  /** The UNet inputs it feeds besides `sample`, `timestep` and `encoder_hidden_states`. */
  readonly unetInputs: readonly InputSpec[];
  encode(request: ConditioningRequest): Promise<{ text: SdText; tokenizeMs: number }>;
  release(): Promise<void>;
}

/** SD's conditioning: one CLIP encoder's `last_hidden_state`, the negative prompt "" by default. */
class ClipConditioning implements TextConditioning {
  readonly unetInputs = [];
  constructor(private readonly encoder: ClipEncoder) {}

  async encode({ prompt, negativePrompt, cfg }: ConditioningRequest) {
    const prompts = cfg ? [negativePrompt ?? "", prompt] : [prompt];
    const { outputs, tokenizeMs } = await this.encoder.encode(prompts, ["last_hidden_state"]);
    return { text: { hidden: asEncodedText(outputs.last_hidden_state), extra: {} }, tokenizeMs };
  }

  release(): Promise<void> {
    return this.encoder.session.release();
  }
}

/**
 * The parts SD and SDXL folders share: the scheduler, UNet, VAE decoder and (when the folder has
 * one, for edits) VAE encoder, and their configs.
 */
export interface SdFolder {
  schedulerConfig: SchedulerConfig;
  unetConfig: Record<string, unknown>;
  vaeConfig: Record<string, unknown>;
  unet: Session;
  vaeDecoder: Session;
  vaeEncoder?: Session;
}

/** A component's `config.json`, or `{}` when the folder has none (configs only add checks). */
export function readOptionalConfig(path: string): Promise<Record<string, unknown>> {
  return readJsonFile<Record<string, unknown>>(path).catch(() => ({}));
}

/** Opens the scheduler, UNet and VAE decoder of an SD-family model folder. */
export async function openSdFolder(graphs: GraphSource): Promise<SdFolder> {
  const { dir } = graphs;
  return {
    schedulerConfig: await readJsonFile<SchedulerConfig>(`${dir}/scheduler/scheduler_config.json`),
    vaeConfig: await readOptionalConfig(`${dir}/vae_decoder/config.json`),
    unetConfig: await readOptionalConfig(`${dir}/unet/config.json`),
    unet: await graphs.open("unet"),
    vaeDecoder: await graphs.open("vae_decoder"),
    vaeEncoder: await exists(graphPath(dir, "vae_encoder"))
      ? await graphs.open("vae_encoder")
      : undefined,
  };
}

/** Whether the scheduler is that of a distilled few-step model (SD-Turbo, SDXL-Turbo). */
export function isDistilled(config: SchedulerConfig): boolean {
  return /^Euler(Ancestral)?DiscreteScheduler$/.test(String(config._class_name)) &&
    config.timestep_spacing === "trailing";
}

/** The model files and sessions one SD pipeline holds. */
export interface StableDiffusionParts {
  backend: Backend;
  conditioning: TextConditioning;
  unet: Session;
  vaeDecoder: Session;
  /** Present when the folder has `vae_encoder/`: the pipeline then edits images. */
  vaeEncoder?: VaeEncoder;
  schedulerConfig: SchedulerConfig;
  vaeScalingFactor: number;
  latentChannels: number;
  /**
   * An inpainting UNet (`in_channels` = 2·latent + 1, sd-v1-5-inpainting's layout): its input is
   * the latents, the latent mask and the masked image's latents, concatenated on channels.
   */
  inpaintingUnet: boolean;
  /** UNet resolution levels (`len(block_out_channels)`); 1 when the config does not say. */
  unetLevels: number;
  defaults: PipelineDefaults;
  /** Slicing and tiling of the decode, and the VAE's tile in latents (`sample_size / 8`). */
  decode: VaeDecodeSettings & { tileLatent: number };
  /** The step cache's signal sub-graphs of the UNet. */
  signals: SignalGraphs;
}

/** Stable Diffusion text-to-image over ONNX Runtime. */
export class StableDiffusionPipeline extends PipelineBase implements Pipeline {
  readonly family: string = STABLE_DIFFUSION.pipelineClasses[0];
  /**
   * 8 (the VAE), times 2 per UNet downsampling: an exported UNet concatenates skip connections of
   * fixed shapes, so latents must halve evenly at every level (diffusers pads this at run time;
   * an ONNX graph cannot).
   */
  readonly sizeMultiple: number;
  /** 1 when the folder has a VAE encoder (image-to-image and inpainting), else 0. */
  readonly maxEditImages: number;
  readonly #parts: StableDiffusionParts;
  readonly #scheduler: Scheduler;
  readonly #timestep: TensorInfo;
  readonly #sampleType: "float32" | "float16";
  /** The VAE decoder's input type, which may differ from the UNet's (microsoft/sd-turbo-webnn). */
  readonly #latentType: "float32" | "float16";

  protected constructor(parts: StableDiffusionParts) {
    super();
    this.#parts = parts;
    this.sizeMultiple = VAE_SCALE * 2 ** (parts.unetLevels - 1);
    this.#scheduler = schedulerOrEuler(parts.schedulerConfig);
    this.maxEditImages = parts.vaeEncoder ? 1 : 0;
    const unet = matchInputs("unet/model.onnx", parts.unet, [
      { name: "sample", types: FLOAT, ranks: [4] },
      { name: "timestep", types: ["int64", ...FLOAT], ranks: [0, 1] },
      { name: "encoder_hidden_states", types: FLOAT, ranks: [3] },
      ...parts.conditioning.unetInputs,
    ]);
    matchOutput("unet/model.onnx", parts.unet, "out_sample", FLOAT);
    const vae = matchInputs("vae_decoder/model.onnx", parts.vaeDecoder, [
      { name: "latent_sample", types: FLOAT, ranks: [4] },
    ]);
    this.#latentType = vae.get("latent_sample")!.type as "float32" | "float16";
    matchOutput("vae_decoder/model.onnx", parts.vaeDecoder, "sample", FLOAT);
    this.#sampleType = unet.get("sample")!.type as "float32" | "float16";
    this.#timestep = unet.get("timestep")!;
  }

  /**
   * Loads the tokenizer, configs and the three sessions of an SD model folder. `defaults`
   * (e.g. from the model registry) override those derived from the configs.
   */
  static async load(
    graphs: GraphSource,
    defaults: Partial<PipelineDefaults> = {},
    decode: VaeDecodeSettings = {},
  ): Promise<StableDiffusionPipeline> {
    const { dir, backend } = graphs;
    const tokenizer = await ClipTokenizer.load(`${dir}/tokenizer`);
    const textConfig = await readOptionalConfig(`${dir}/text_encoder/config.json`);
    const folder = await openSdFolder(graphs);
    const textEncoder = await graphs.open("text_encoder");
    const label = "text_encoder/model.onnx";
    const encoder = new ClipEncoder(label, backend, tokenizer, textEncoder, ["last_hidden_state"]);
    const distilled = isDistilled(folder.schedulerConfig);
    const pipeline = new StableDiffusionPipeline(
      sdParts(graphs, folder, new ClipConditioning(encoder), decode, {
        ...(distilled ? STABLE_DIFFUSION.distilledDefaults : STABLE_DIFFUSION.defaults),
        ...defaults,
      }),
    );
    checkAgreement("the text features' width", [
      configStatement("text_encoder/config.json", textConfig, "hidden_size"),
      axisStatement(label, textEncoder, "last_hidden_state", 2),
      configStatement("unet/config.json", folder.unetConfig, "cross_attention_dim"),
      axisStatement("unet/model.onnx", folder.unet, "encoder_hidden_states", 2),
    ]);
    return pipeline;
  }

  get device() {
    return this.#parts.backend.device;
  }

  get defaults(): PipelineDefaults {
    return this.#parts.defaults;
  }

  batchKey(options: GenerateOptions): string {
    const { params, run } = this.#setup(options);
    return JSON.stringify([
      params.width,
      params.height,
      params.steps,
      params.scheduler,
      params.guidanceScale > 1,
      editMode(options.edit),
      run.timesteps.length,
    ]);
  }

  /** 1. Check inputs and choose the schedule; 4. latents from the request's own generator. */
  #setup(options: GenerateOptions): SdSetup {
    const p = this.#parts;
    const width = options.width ?? p.defaults.width;
    const height = options.height ?? p.defaults.height;
    const steps = options.steps ?? p.defaults.steps;
    const guidanceScale = options.guidanceScale ?? p.defaults.guidanceScale;
    const n = options.n ?? 1;
    checkGenerateOptions(
      { width, height, steps, guidanceScale, n },
      this.family,
      this.sizeMultiple,
    );
    const scheduler = options.scheduler
      ? createScheduler(p.schedulerConfig, options.scheduler)
      : this.#scheduler;
    const params = { width, height, steps, guidanceScale, n, scheduler: scheduler.name };
    const full = scheduler.setTimesteps(steps);
    if (options.edit) return this.#editSetup(options.edit, params, full);
    if (p.inpaintingUnet) {
      // Text-to-image on an inpainting UNet: everything repainted, from pure noise, with an
      // all-masked (so all-zero) image as the UNet's masked-image input.
      const blank = { width, height, data: new Uint8Array(width * height * 3) };
      const mask = new Uint8Array(width * height).fill(255);
      return this.#editSetup({ image: blank, mask, strength: 1 }, params, full);
    }
    const shape = [n, p.latentChannels, height / VAE_SCALE, width / VAE_SCALE];
    return {
      params,
      run: full,
      initialLatents: (generator) =>
        randnFrom(generator, shape).map((x) => x * full.initNoiseSigma),
    };
  }

  /**
   * An edit's schedule and latents, as diffusers' `StableDiffusionImg2ImgPipeline` (no mask) and
   * `StableDiffusionInpaintPipeline` (a mask) prepare them, with the same draws from the
   * generator in the same order: the image's encoder sample, the noise, then the masked image's
   * encoder sample (the inpainting pipeline draws it whatever its UNet).
   */
  #editSetup(edit: EditInput, params: SdSetup["params"], full: SchedulerRun): SdSetup {
    const p = this.#parts;
    const encoder = p.vaeEncoder;
    if (!encoder) {
      throw new InvalidInputError(
        `${this.family}: this model cannot edit images (its folder has no vae_encoder)`,
      );
    }
    const { width, height, n } = params;
    const [h, w] = [height / VAE_SCALE, width / VAE_SCALE];
    const encode = async (pixels: Float32Array, generator: Mt19937) =>
      (await encoder.encode(pixels, width, height, generator)).map((x) => x * p.vaeScalingFactor);
    if (!p.inpaintingUnet) {
      return editSetup(edit, {
        full,
        steps: params.steps,
        n,
        width,
        height,
        scale: VAE_SCALE,
        channels: p.latentChannels,
        rounding: "sd",
        encode,
        pureNoiseAtFullStrength: true,
      }, params);
    }
    // The inpainting UNet takes the mask and the masked image; an image-to-image request on it
    // repaints everything.
    checkEdit(edit, width, height);
    const run = startAt(full, editStart(params.steps, edit.strength, "sd"));
    const mask = edit.mask ?? new Uint8Array(width * height).fill(255);
    const plane = latentMask(mask, width, height, VAE_SCALE);
    const fromNoise = edit.strength === 1;
    const setup: SdSetup = {
      params,
      run,
      initialLatents: async (generator) => {
        const shape = [n, p.latentChannels, h, w];
        const known = fromNoise
          ? undefined
          : repeatImages(await encode(imagePixels(edit.image), generator), n);
        const noise = randnFrom(generator, shape);
        const latents = known
          ? run.addNoise(known, noise, 0)
          : noise.map((x) => x * run.initNoiseSigma);
        // Per image: the mask's plane, then the masked image's latents.
        const masked = await encode(imagePixels(edit.image, mask), generator);
        setup.unetExtra = repeatImages(concatAll([plane, masked]), n);
        return latents;
      },
    };
    return setup;
  }

  async generateBatch(batch: readonly GenerateOptions[]): Promise<BatchOutcome[]> {
    const p = this.#parts;
    // 1. Check inputs; 4. initial latents (drawn first: they only depend on the seed).
    const setups = new Map<GenerateOptions, SdSetup>();
    const members = await createMembers<SdText>(batch, (o) => {
      const setup = this.#setup(o);
      setups.set(o, setup);
      return setup;
    });
    // 2.–3. Tokenize and encode each request's prompts, negative first as diffusers does.
    await eachLive(members, "textEncodeMs", async (m) => {
      const { text, tokenizeMs } = await p.conditioning.encode({
        prompt: m.options.prompt,
        negativePrompt: m.options.negativePrompt,
        cfg: m.params.guidanceScale > 1,
        width: m.params.width,
        height: m.params.height,
      });
      m.timings.tokenizeMs = tokenizeMs;
      m.text = text;
    });
    // 5. Denoise: one UNet call per step for every live request, `[uncond × n, cond × n]` each.
    const textRows = new TextRows();
    const extraRows = new Map(p.conditioning.unetInputs.map((s) => [s.name, new TextRows(true)]));
    // The UNet's inputs of step i, built once for the step cache's signal and the UNet.
    let built: { i: number; active: readonly Member[]; feeds: Record<string, Tensor> } | undefined;
    const feedsOf = (active: SdMember[], i: number) => {
      if (built?.i !== i || built.active !== active) {
        built = { i, active, feeds: this.#unetFeeds(active, i, setups, textRows, extraRows) };
      }
      return built.feeds;
    };
    await denoise(members, {
      signal: async (active, i, cache) => {
        const graph = await p.signals.get(cache);
        return graph?.run(feedsOf(active, i));
      },
      predict: async (active, i) => {
        const out = await p.unet.run(feedsOf(active, i));
        const eps = await readFloat32(out.out_sample);
        out.out_sample.dispose();
        let offset = 0;
        return active.map((m) => {
          const cfg = m.params.guidanceScale > 1;
          const size = m.latents.length;
          const own = eps.subarray(offset, offset + size * (cfg ? 2 : 1));
          offset += own.length;
          return cfg ? guide(own, size, m.params.guidanceScale) : own.slice();
        });
      },
      preview: (m, x0) => this.#preview(m, x0),
    });
    // 6. Decode each request on its own (so its pixels never depend on its batch-mates).
    await eachLive(members, "decodeMs", async (m) => {
      m.images = await this.#decode(m.latents, m.params, m.options.signal);
    });
    return outcomes(members);
  }

  /** The UNet's inputs at step `i`: `[uncond × n, cond × n]` per request with guidance. */
  #unetFeeds(
    active: SdMember[],
    i: number,
    setups: Map<GenerateOptions, SdSetup>,
    textRows: TextRows,
    extraRows: Map<string, TextRows>,
  ): Record<string, Tensor> {
    const p = this.#parts;
    const [h, w] = [active[0].params.height / VAE_SCALE, active[0].params.width / VAE_SCALE];
    const input = active.flatMap((m) => {
      let x = m.run.scaleModelInput(m.latents, i);
      // A 9-channel inpainting UNet also reads the mask and the masked image's latents.
      const extra = setups.get(m.options)!.unetExtra;
      if (extra) x = interleaveImages(x, extra, m.params.n);
      return m.params.guidanceScale > 1 ? [x, x] : [x];
    });
    const batchRows = active.reduce(
      (sum, m) => sum + m.params.n * (m.params.guidanceScale > 1 ? 2 : 1),
      0,
    );
    return {
      sample: p.backend.tensor(this.#sampleType, concatAll(input), [
        batchRows,
        p.inpaintingUnet ? 2 * p.latentChannels + 1 : p.latentChannels,
        h,
        w,
      ]),
      timestep: this.#timestepTensor(active[0].run.timesteps[i], batchRows),
      encoder_hidden_states: textRows.tensor(
        active,
        (m) => m.text!.hidden,
        p.backend,
        this.#sampleType,
      ),
      ...Object.fromEntries(
        [...extraRows].map(([name, rows]) => [
          name,
          rows.tensor(active, (m) => m.text!.extra[name], p.backend, this.#sampleType),
        ]),
      ),
    };
  }

  async #decode(latents: Float32Array, params: RunParams, signal?: CancelSignal) {
    const p = this.#parts;
    const shape = [params.n, p.latentChannels, params.height / VAE_SCALE, params.width / VAE_SCALE];
    const [, channels, h, w] = shape;
    const pixels = await decodeLatents(
      latents.map((x) => x / p.vaeScalingFactor),
      { n: params.n, channels, h, w, scale: VAE_SCALE },
      decoderRun(p.vaeDecoder, p.backend, this.#latentType, (n, th, tw) => [n, channels, th, tw]),
      p.decode,
      p.decode.tileLatent,
      signal,
    );
    return toRgbImages(pixels, params.n, params.width, params.height);
  }

  /** SD's or SDXL's own VAE: the cheap latent→RGB map; any other autoencoder: the decoder itself. */
  #preview(m: Member, x0: Float32Array) {
    const p = this.#parts;
    const factors = PREVIEWS.find((v) => previewFits(v, { scalingFactor: p.vaeScalingFactor }))
      ?.factors;
    if (factors && p.latentChannels === 4) {
      const { n, height, width } = m.params;
      return Promise.resolve(latentsToRgb(x0, n, height / VAE_SCALE, width / VAE_SCALE, factors));
    }
    return this.#decode(x0, m.params, m.options.signal);
  }

  /**
   * The timestep in the form the graph declares: a scalar, `[1]` where the graph fixes that
   * length, else one per batch row as diffusers expands it (a graph whose `timestep` shares the
   * `batch` axis of `sample` must get as many; SDXL's time embedding meets `text_embeds` there).
   */
  #timestepTensor(t: number, rows: number): Tensor {
    const shape = this.#timestep.shape;
    const fixed = typeof shape[0] === "number" && shape[0] > 0 ? shape[0] : rows;
    const dims = shape.length === 0 ? [] : [fixed];
    const length = dims[0] ?? 1;
    if (this.#timestep.type === "int64") {
      return this.#parts.backend.tensor(
        "int64",
        new BigInt64Array(length).fill(BigInt(Math.trunc(t))),
        dims,
      );
    }
    return this.#parts.backend.tensor(
      this.#timestep.type as "float32" | "float16",
      new Float32Array(length).fill(t),
      dims,
    );
  }

  protected held() {
    const p = this.#parts;
    return [p.conditioning, p.unet, p.vaeDecoder, p.vaeEncoder, p.signals];
  }
}

/** What {@linkcode StableDiffusionPipeline} decides for one request. */
interface SdSetup extends MemberSetup {
  /**
   * An inpainting UNet's extra input channels for each of the request's images (the latent mask,
   * then the masked image's latents), set once its image is encoded.
   */
  unetExtra?: Float32Array;
}

/** Per image, `a`'s channels then `b`'s (`b` is already one block per image). */
function interleaveImages(a: Float32Array, b: Float32Array, n: number): Float32Array {
  const sa = a.length / n, sb = b.length / n;
  const out = new Float32Array(a.length + b.length);
  for (let k = 0; k < n; k++) {
    out.set(a.subarray(k * sa, (k + 1) * sa), k * (sa + sb));
    out.set(b.subarray(k * sb, (k + 1) * sb), k * (sa + sb) + sa);
  }
  return out;
}

/**
 * The parts of a pipeline over `folder`: size defaults from the UNet's `sample_size`, under
 * `defaults` (the family's, then the registry's).
 */
export function sdParts(
  graphs: GraphSource,
  folder: SdFolder,
  conditioning: TextConditioning,
  decode: VaeDecodeSettings,
  defaults: Partial<PipelineDefaults> & Pick<PipelineDefaults, "steps" | "guidanceScale">,
): StableDiffusionParts {
  const { unetConfig, vaeConfig, unet, vaeDecoder } = folder;
  const sampleSize = Number(unetConfig.sample_size ?? 64) * VAE_SCALE;
  const un = (name: string, axis: number) => axisStatement("unet/model.onnx", unet, name, axis);
  const vae = (axis: number) =>
    axisStatement("vae_decoder/model.onnx", vaeDecoder, "latent_sample", axis);
  const unetField = (key: string) => configStatement("unet/config.json", unetConfig, key);
  const latentChannels = [
    unetField("out_channels"),
    un("out_sample", 1),
    configStatement("vae_decoder/config.json", vaeConfig, "latent_channels"),
    vae(1),
  ];
  checkAgreement("the latent channels", latentChannels);
  const channels = Number(latentChannels.find((s) => typeof s.value === "number")?.value ?? 4);
  // The UNet takes the latents, or (an inpainting UNet) latents, mask and masked-image latents.
  const inputs = [unetField("in_channels"), un("sample", 1)];
  const inpaintingUnet = inputs.some((s) => s.value === 2 * channels + 1);
  checkAgreement("the latent channels", [
    ...latentChannels,
    ...inputs.map((s) => inpaintingUnet ? { ...s, value: (Number(s.value) - 1) / 2 } : s),
  ]);
  // A graph exported for one latent size states it; the config's sample_size must agree.
  for (const [side, axis] of [["height", 2], ["width", 3]] as const) {
    checkAgreement(`the latent ${side}`, [
      unetField("sample_size"),
      un("sample", axis),
      un("out_sample", axis),
      vae(axis),
    ]);
  }
  if (folder.vaeEncoder) {
    checkAgreement("the latent channels", [
      ...latentChannels,
      {
        source: "vae_encoder/model.onnx latent_parameters[1] / 2",
        value: halved(
          axisStatement("vae_encoder/model.onnx", folder.vaeEncoder, "latent_parameters", 1).value,
        ),
      },
    ]);
  }
  if (inpaintingUnet && !folder.vaeEncoder) {
    throw new ModelLoadError(
      "unet/model.onnx is an inpainting UNet (latents, mask and masked-image latents in), but the folder has no vae_encoder/ to encode its images",
    );
  }
  return {
    backend: graphs.backend,
    conditioning,
    unet,
    vaeDecoder,
    vaeEncoder: folder.vaeEncoder && new VaeEncoder(folder.vaeEncoder, graphs.backend),
    inpaintingUnet,
    schedulerConfig: folder.schedulerConfig,
    vaeScalingFactor: Number(vaeConfig.scaling_factor ?? 0.18215),
    latentChannels: channels,
    unetLevels: Array.isArray(unetConfig.block_out_channels)
      ? Math.max(1, unetConfig.block_out_channels.length)
      : 1,
    decode: { ...decode, tileLatent: Number(vaeConfig.sample_size ?? 512) / VAE_SCALE },
    signals: new SignalGraphs(graphs.backend, graphPath(graphs.dir, "unet")),
    defaults: { width: sampleSize, height: sampleSize, ...defaults },
  };
}

/**
 * The model's scheduler, or Euler with the same noise schedule when it names one we do not
 * implement (runwayml SD 1.5 ships PNDM; diffusers users commonly swap it for Euler the same way).
 */
function schedulerOrEuler(config: SchedulerConfig): Scheduler {
  try {
    return createScheduler(config);
  } catch {
    return createScheduler(config, "euler");
  }
}

const halved = (v: unknown) => typeof v === "number" ? v / 2 : undefined;

/** Classifier-free guidance on a `[uncond…, cond…]` batch: `ε_u + g·(ε_c − ε_u)`. */
export function guide(eps: Float32Array, half: number, scale: number): Float32Array {
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const u = eps[i];
    out[i] = u + scale * (eps[half + i] - u);
  }
  return out;
}
