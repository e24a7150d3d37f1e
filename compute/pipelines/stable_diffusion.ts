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
 * @module
 */
import {
  type Backend,
  readFloat32,
  type Session,
  type Tensor,
  type TensorInfo,
} from "../backends/backend.ts";
import { CancelledError } from "../errors.ts";
import { readJsonFile } from "../model/files.ts";
import { matchInputs, matchOutput } from "../model/graph_interface.ts";
import { openSession } from "../model/model_folder.ts";
import { Mt19937, randnFrom } from "../random.ts";
import { createScheduler, type Scheduler, type SchedulerConfig } from "../schedulers/mod.ts";
import { ClipTokenizer } from "../tokenizers/clip_tokenizer.ts";
import { checkGenerateOptions, concat, randomSeed, toRgbImages } from "./common.ts";
import type { GenerateOptions, GenerateResult, Pipeline, PipelineDefaults } from "./pipeline.ts";

const FLOAT = ["float32", "float16"] as const;
/** VAE downsampling factor of every SD-family autoencoder (`2 ** (len(block_out_channels) - 1)`). */
const VAE_SCALE = 8;

/** The model files and sessions one SD pipeline holds. */
export interface StableDiffusionParts {
  backend: Backend;
  tokenizer: ClipTokenizer;
  textEncoder: Session;
  unet: Session;
  vaeDecoder: Session;
  schedulerConfig: SchedulerConfig;
  vaeScalingFactor: number;
  latentChannels: number;
  defaults: PipelineDefaults;
}

/** Stable Diffusion text-to-image over ONNX Runtime. */
export class StableDiffusionPipeline implements Pipeline {
  readonly family = "StableDiffusionPipeline";
  readonly sizeMultiple = VAE_SCALE;
  readonly #parts: StableDiffusionParts;
  readonly #scheduler: Scheduler;
  readonly #timestep: TensorInfo;
  readonly #sampleType: "float32" | "float16";
  readonly #idsType: "int32" | "int64";

  private constructor(parts: StableDiffusionParts) {
    this.#parts = parts;
    this.#scheduler = schedulerOrEuler(parts.schedulerConfig);
    const te = matchInputs("text_encoder/model.onnx", parts.textEncoder, [
      { name: "input_ids", types: ["int32", "int64"], ranks: [2] },
    ]);
    matchOutput("text_encoder/model.onnx", parts.textEncoder, "last_hidden_state", FLOAT);
    const unet = matchInputs("unet/model.onnx", parts.unet, [
      { name: "sample", types: FLOAT, ranks: [4] },
      { name: "timestep", types: ["int64", ...FLOAT], ranks: [0, 1] },
      { name: "encoder_hidden_states", types: FLOAT, ranks: [3] },
    ]);
    matchOutput("unet/model.onnx", parts.unet, "out_sample", FLOAT);
    matchInputs("vae_decoder/model.onnx", parts.vaeDecoder, [
      { name: "latent_sample", types: FLOAT, ranks: [4] },
    ]);
    matchOutput("vae_decoder/model.onnx", parts.vaeDecoder, "sample", FLOAT);
    this.#idsType = te.get("input_ids")!.type as "int32" | "int64";
    this.#sampleType = unet.get("sample")!.type as "float32" | "float16";
    this.#timestep = unet.get("timestep")!;
  }

  /**
   * Loads the tokenizer, configs and the three sessions of an SD model folder. `defaults`
   * (e.g. from the model registry) override those derived from the configs.
   */
  static async load(
    dir: string,
    backend: Backend,
    defaults: Partial<PipelineDefaults> = {},
  ): Promise<StableDiffusionPipeline> {
    const tokenizer = await ClipTokenizer.load(`${dir}/tokenizer`);
    const schedulerConfig = await readJsonFile<SchedulerConfig>(
      `${dir}/scheduler/scheduler_config.json`,
    );
    const vaeConfig = await readJsonFile<Record<string, unknown>>(`${dir}/vae_decoder/config.json`)
      .catch(() => ({} as Record<string, unknown>));
    const unetConfig = await readJsonFile<Record<string, unknown>>(`${dir}/unet/config.json`)
      .catch(() => ({} as Record<string, unknown>));
    const textEncoder = await openSession(backend, dir, "text_encoder", ["last_hidden_state"]);
    const unet = await openSession(backend, dir, "unet");
    const vaeDecoder = await openSession(backend, dir, "vae_decoder");
    const sampleSize = Number(unetConfig.sample_size ?? 64) * VAE_SCALE;
    // Distilled one-step models (SD-Turbo) ship Euler with trailing spacing and run without CFG.
    const distilled = schedulerConfig._class_name === "EulerDiscreteScheduler" &&
      schedulerConfig.timestep_spacing === "trailing";
    return new StableDiffusionPipeline({
      backend,
      tokenizer,
      textEncoder,
      unet,
      vaeDecoder,
      schedulerConfig,
      vaeScalingFactor: Number(vaeConfig.scaling_factor ?? 0.18215),
      latentChannels: Number(unetConfig.in_channels ?? 4),
      defaults: {
        width: sampleSize,
        height: sampleSize,
        steps: distilled ? 1 : 50,
        guidanceScale: distilled ? 0 : 7.5,
        ...defaults,
      },
    });
  }

  get device() {
    return this.#parts.backend.device;
  }

  get defaults(): PipelineDefaults {
    return this.#parts.defaults;
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const started = performance.now();
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
    const run = scheduler.setTimesteps(steps);
    const seed = options.seed === undefined ? randomSeed() : BigInt(options.seed);
    const generator = new Mt19937(seed);
    const cfg = guidanceScale > 1;
    const checkCancelled = () => {
      if (options.signal?.aborted) throw new CancelledError("Generation cancelled");
    };

    // 2. Tokenize (negative first: diffusers concatenates [uncond, cond]).
    let t = performance.now();
    const prompts = cfg ? [options.negativePrompt ?? "", options.prompt] : [options.prompt];
    const idsPerPrompt = prompts.map((text) => p.tokenizer.encode(text));
    const ids = idsPerPrompt.flatMap((row) => Array<number[]>(n).fill(row)).flat();
    const tokenizeMs = performance.now() - t;

    // 3. Text encoder, one batch; on WebGPU its output stays on the GPU for every UNet call.
    t = performance.now();
    checkCancelled();
    const batch = prompts.length * n;
    const idsTensor = p.backend.tensor(
      this.#idsType,
      this.#idsType === "int64" ? BigInt64Array.from(ids, BigInt) : Int32Array.from(ids),
      [batch, p.tokenizer.maxLength],
    );
    const encoded = await p.textEncoder.run({ input_ids: idsTensor });
    const hidden = encoded.last_hidden_state;
    disposeAllBut(encoded, "last_hidden_state");
    const textEncodeMs = performance.now() - t;

    // 4. Initial latents from the request's generator, as `randn_tensor` draws them.
    const latentShape = [n, p.latentChannels, height / VAE_SCALE, width / VAE_SCALE];
    const perImage = latentShape[1] * latentShape[2] * latentShape[3];
    let latents: Float32Array = randnFrom(generator, latentShape).map((x) =>
      x * run.initNoiseSigma
    );

    // 5. Denoising loop.
    const stepMs: number[] = [];
    try {
      for (let i = 0; i < run.timesteps.length; i++) {
        checkCancelled();
        const stepStart = performance.now();
        const modelInput = run.scaleModelInput(latents, i);
        const sample = cfg ? concat(modelInput, modelInput) : modelInput;
        const out = await p.unet.run({
          sample: p.backend.tensor(this.#sampleType, sample, [batch, ...latentShape.slice(1)]),
          timestep: this.#timestepTensor(run.timesteps[i]),
          encoder_hidden_states: hidden,
        });
        const eps = await readFloat32(out.out_sample);
        out.out_sample.dispose();
        const noisePred = cfg ? guide(eps, n * perImage, guidanceScale) : eps;
        latents = run.step(noisePred, i, latents, generator);
        const ms = performance.now() - stepStart;
        stepMs.push(ms);
        options.onStep?.({ step: i, total: run.timesteps.length, timestep: run.timesteps[i], ms });
      }
    } finally {
      hidden.dispose();
    }

    // 6. Decode.
    checkCancelled();
    t = performance.now();
    const scaled = latents.map((x) => x / p.vaeScalingFactor);
    const decoded = await p.vaeDecoder.run({
      latent_sample: p.backend.tensor(this.#sampleType, scaled, latentShape),
    });
    const pixels = await readFloat32(decoded.sample);
    decoded.sample.dispose();
    const images = toRgbImages(pixels, n, width, height);
    const decodeMs = performance.now() - t;

    return {
      images,
      seed,
      width,
      height,
      steps,
      guidanceScale,
      scheduler: scheduler.name,
      timings: { tokenizeMs, textEncodeMs, stepMs, decodeMs, totalMs: performance.now() - started },
    };
  }

  /** The timestep in the form the graph declares: int64 `[1]`, or a float scalar / `[1]`. */
  #timestepTensor(t: number): Tensor {
    const dims = this.#timestep.shape.length === 0 ? [] : [1];
    if (this.#timestep.type === "int64") {
      return this.#parts.backend.tensor("int64", BigInt64Array.of(BigInt(Math.trunc(t))), dims);
    }
    return this.#parts.backend.tensor(
      this.#timestep.type as "float32" | "float16",
      Float32Array.of(t),
      dims,
    );
  }

  async release(): Promise<void> {
    await this.#parts.textEncoder.release();
    await this.#parts.unet.release();
    await this.#parts.vaeDecoder.release();
  }
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

function disposeAllBut(outputs: Record<string, Tensor>, keep: string): void {
  for (const [name, t] of Object.entries(outputs)) if (name !== keep) t.dispose();
}

/** Classifier-free guidance on a `[uncond…, cond…]` batch: `ε_u + g·(ε_c − ε_u)`. */
export function guide(eps: Float32Array, half: number, scale: number): Float32Array {
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const u = eps[i];
    out[i] = u + scale * (eps[half + i] - u);
  }
  return out;
}
