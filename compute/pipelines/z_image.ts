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
import { type Backend, readFloat32, type Session, type Tensor } from "../backends/backend.ts";
import { CancelledError } from "../errors.ts";
import { readJsonFile } from "../model/files.ts";
import { matchInputs, matchOutput } from "../model/graph_interface.ts";
import { openSession } from "../model/model_folder.ts";
import { Mt19937, randnFrom } from "../random.ts";
import { createScheduler, type Scheduler, type SchedulerConfig } from "../schedulers/mod.ts";
import { linspace } from "../schedulers/scheduler.ts";
import { QwenTokenizer } from "../tokenizers/qwen_tokenizer.ts";
import type { GenerateOptions, GenerateResult, Pipeline, PipelineDefaults } from "./pipeline.ts";
import { checkGenerateOptions, randomSeed, toRgbImages } from "./common.ts";

const CHAT_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n";
const MAX_SEQUENCE_LENGTH = 512;
const CHANNELS = 16;
const VAE_SCALE = 8;

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
export class ZImagePipeline implements Pipeline {
  readonly family = "ZImagePipeline";
  readonly sizeMultiple = 16;

  private constructor(
    private readonly backend: Backend,
    private readonly tokenizer: QwenTokenizer,
    private readonly textEncoder: Session,
    private readonly transformer: Session,
    private readonly vaeDecoder: Session,
    private readonly scheduler: Scheduler,
    private readonly vae: { scaling: number; shift: number },
    readonly defaults: PipelineDefaults,
  ) {
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
    dir: string,
    backend: Backend,
    defaults: Partial<PipelineDefaults> = {},
  ): Promise<ZImagePipeline> {
    const tokenizer = await QwenTokenizer.load(`${dir}/tokenizer`);
    const schedulerConfig = await readJsonFile<SchedulerConfig>(
      `${dir}/scheduler/scheduler_config.json`,
    );
    const vae = await readJsonFile<{ scaling_factor?: number; shift_factor?: number }>(
      `${dir}/vae_decoder/config.json`,
    );
    return new ZImagePipeline(
      backend,
      tokenizer,
      await openSession(backend, dir, "text_encoder"),
      await openSession(backend, dir, "transformer"),
      await openSession(backend, dir, "vae_decoder"),
      createScheduler(schedulerConfig),
      { scaling: vae.scaling_factor ?? 0.3611, shift: vae.shift_factor ?? 0.1159 },
      { width: 1024, height: 1024, steps: 8, guidanceScale: 0, ...defaults },
    );
  }

  get device() {
    return this.backend.device;
  }

  /** Caption features of one prompt, repeated for `n` samples: `[n, S, D]`. */
  async #encode(prompt: string, n: number): Promise<Tensor> {
    const ids = this.tokenizer.encode(CHAT_TEMPLATE.replace("{}", prompt), MAX_SEQUENCE_LENGTH);
    const rows = Array.from({ length: n }, () => ids).flat();
    const out = await this.textEncoder.run({
      input_ids: this.backend.tensor("int64", BigInt64Array.from(rows, BigInt), [n, ids.length]),
      attention_mask: this.backend.tensor("int64", new BigInt64Array(n * ids.length).fill(1n), [
        n,
        ids.length,
      ]),
    });
    return out.encoder_hidden_state;
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const started = performance.now();
    const width = options.width ?? this.defaults.width;
    const height = options.height ?? this.defaults.height;
    const steps = options.steps ?? this.defaults.steps;
    const guidanceScale = options.guidanceScale ?? this.defaults.guidanceScale;
    const n = options.n ?? 1;
    const { cfgTruncation = 1, cfgNormalization = 0 } = options;
    if (!(cfgTruncation >= 0 && cfgTruncation <= 1)) {
      throw new RangeError(`cfgTruncation must be within [0, 1], got ${cfgTruncation}`);
    }
    if (!(cfgNormalization >= 0)) {
      throw new RangeError(`cfgNormalization must be >= 0, got ${cfgNormalization}`);
    }
    checkGenerateOptions(
      { width, height, steps, guidanceScale, n },
      this.family,
      this.sizeMultiple,
    );
    const checkCancelled = () => {
      if (options.signal?.aborted) throw new CancelledError("Generation cancelled");
    };
    const seed = options.seed === undefined ? randomSeed() : BigInt(options.seed);
    const generator = new Mt19937(seed);
    const cfg = guidanceScale > 0; // diffusers ≥ 97c2c6e3 (Feb 2026)

    let t = performance.now();
    checkCancelled();
    const pos = await this.#encode(options.prompt, n);
    const neg = cfg ? await this.#encode(options.negativePrompt ?? "", n) : undefined;
    const textEncodeMs = performance.now() - t;

    const lh = 2 * Math.floor(height / 16), lw = 2 * Math.floor(width / 16);
    const shape5 = [n, CHANNELS, 1, lh, lw];
    let latents = randnFrom(generator, [n, CHANNELS, lh, lw]);
    const run = this.scheduler.setTimesteps(steps, { sigmas: linspace(1, 1 / steps, steps) });
    const perSample = CHANNELS * lh * lw;

    const stepMs: number[] = [];
    try {
      for (let i = 0; i < run.timesteps.length; i++) {
        checkCancelled();
        const stepStart = performance.now();
        const modelT = 1 - run.sigmas[i]; // (1000 − t)/1000
        const predict = async (captions: Tensor) => {
          const out = await this.transformer.run({
            hidden_states: this.backend.tensor("float32", latents, shape5),
            timestep: this.backend.tensor("float32", new Float32Array(n).fill(modelT), [n]),
            encoder_hidden_states: captions,
          });
          const r = await readFloat32(out.unified_results);
          out.unified_results.dispose();
          return r;
        };
        const posOut = await predict(pos);
        const scale = cfg && modelT <= cfgTruncation ? guidanceScale : 0;
        let pred = posOut;
        if (neg && scale > 0) {
          const negOut = await predict(neg);
          pred = new Float32Array(posOut.length);
          for (let b = 0; b < n; b++) {
            const range = [b * perSample, (b + 1) * perSample] as const;
            pred.set(
              zImageGuidance(
                posOut.subarray(...range),
                negOut.subarray(...range),
                scale,
                cfgNormalization,
              ),
              range[0],
            );
          }
        }
        const noise = pred.map((v) => -v);
        latents = run.step(noise, i, latents, generator);
        const ms = performance.now() - stepStart;
        stepMs.push(ms);
        options.onStep?.({ step: i, total: run.timesteps.length, timestep: run.timesteps[i], ms });
      }
    } finally {
      pos.dispose();
      neg?.dispose();
    }

    checkCancelled();
    t = performance.now();
    const z = latents.map((v) => v / this.vae.scaling + this.vae.shift);
    const decoded = await this.vaeDecoder.run({
      latent_sample: this.backend.tensor("float32", z, [n, CHANNELS, lh, lw]),
    });
    const pixels = await readFloat32(decoded.sample);
    decoded.sample.dispose();
    const outH = lh * VAE_SCALE, outW = lw * VAE_SCALE;
    const images = toRgbImages(pixels, n, outW, outH);
    const decodeMs = performance.now() - t;
    return {
      images,
      seed,
      width: outW,
      height: outH,
      steps,
      guidanceScale,
      scheduler: this.scheduler.name,
      timings: {
        tokenizeMs: 0,
        textEncodeMs,
        stepMs,
        decodeMs,
        totalMs: performance.now() - started,
      },
    };
  }

  async release(): Promise<void> {
    await this.textEncoder.release();
    await this.transformer.release();
    await this.vaeDecoder.release();
  }
}
