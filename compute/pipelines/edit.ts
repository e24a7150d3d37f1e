/**
 * What image-to-image and inpainting share across families (diffusers' img2img and inpaint
 * pipelines): checking an {@linkcode EditInput}, where in the schedule an edit starts, the image as
 * the VAE encoder takes it, sampling the encoder's latent distribution with the request's
 * generator, the mask at latent size, and blending the kept region back after each step.
 *
 * @module
 */
import { type Backend, readFloat32, type Session, type TensorInfo } from "../backends/backend.ts";
import { InterfaceMismatchError, InvalidInputError } from "../errors.ts";
import { matchInputs } from "../model/graph_interface.ts";
import { type Mt19937, randnFrom } from "../random.ts";
import { type SchedulerRun, startAt } from "../schedulers/scheduler.ts";
import type { MemberSetup } from "./denoising_loop.ts";
import type { EditInput, RgbImage } from "./pipeline.ts";

/**
 * How `N·strength` becomes the first step run: diffusers' SD pipelines truncate it
 * (`int(N·strength)`), its flow-matching ones (Flux, Z-Image, Qwen-Image) keep it fractional and
 * truncate `N − N·strength` instead, so N=4 at 0.6 runs 2 steps on SD and 3 on a flow model.
 */
export type StrengthRounding = "sd" | "flow";

/**
 * The first step an edit runs (diffusers `get_timesteps`' `t_start`). Throws
 * {@linkcode InvalidInputError} for a strength outside (0, 1] or one that leaves no step to run.
 */
export function editStart(steps: number, strength: number, rounding: StrengthRounding): number {
  if (!(strength > 0 && strength <= 1)) {
    throw new InvalidInputError(`strength must be in (0, 1], got ${strength}`);
  }
  const init = rounding === "sd"
    ? Math.min(Math.trunc(steps * strength), steps)
    : Math.min(steps * strength, steps);
  const begin = Math.trunc(Math.max(steps - init, 0));
  if (steps - begin < 1) {
    throw new InvalidInputError(
      `strength ${strength} with num_inference_steps ${steps} leaves no step to run (num_inference_steps × strength must be >= 1)`,
    );
  }
  return begin;
}

/** How a request uses its image: none, image-to-image, or inpainting (a mask). */
export function editMode(edit?: EditInput): "none" | "img2img" | "inpaint" {
  return !edit ? "none" : edit.mask ? "inpaint" : "img2img";
}

/** Throws {@linkcode InvalidInputError} unless the image and mask fit a `width × height` output. */
export function checkEdit(edit: EditInput, width: number, height: number): void {
  const { image, mask } = edit;
  if (image.width !== width || image.height !== height) {
    throw new InvalidInputError(
      `The image is ${image.width}×${image.height}, but the output is ${width}×${height}: resize it first`,
    );
  }
  if (image.data.length !== width * height * 3) {
    throw new InvalidInputError(
      `The image's pixels are ${image.data.length} bytes, expected ${width * height * 3} (RGB)`,
    );
  }
  if (mask && mask.length !== width * height) {
    throw new InvalidInputError(
      `The mask is ${mask.length} bytes, expected one per pixel (${width * height})`,
    );
  }
  editStart(1, edit.strength, "flow");
}

/** Whether a mask byte repaints its pixel (diffusers binarises at 0.5: 128/255 ≥ 0.5 > 127/255). */
const repaints = (m: number) => m >= 128;

/**
 * The image as a `[1, 3, H, W]` float32 tensor in [−1, 1] (diffusers `VaeImageProcessor`:
 * `2·(v/255) − 1` in float32). With `mask`, repainted pixels are 0 (the inpainting UNet's
 * `masked_image = image · (mask < 0.5)`).
 */
export function imagePixels(image: RgbImage, mask?: Uint8Array): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    if (mask && repaints(mask[i])) continue;
    for (let c = 0; c < 3; c++) {
      out[c * plane + i] = Math.fround(2 * Math.fround(image.data[i * 3 + c] / 255) - 1);
    }
  }
  return out;
}

/**
 * The mask at latent size, 1 = repaint and 0 = keep: binarised at 0.5 and downsampled by nearest
 * neighbour (torch's `interpolate` default), so latent cell (y, x) takes pixel (y·s, x·s).
 */
export function latentMask(
  mask: Uint8Array,
  width: number,
  height: number,
  scale: number,
): Float32Array {
  const h = height / scale, w = width / scale;
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      out[y * w + x] = repaints(mask[y * scale * width + x * scale]) ? 1 : 0;
    }
  }
  return out;
}

/**
 * A sample of the encoder's diagonal Gaussian from its `[1, 2C, h, w]` parameters (diffusers
 * `DiagonalGaussianDistribution.sample`): `mean + exp(½·clamp(logvar, −30, 20))·ε`, with ε drawn
 * from the request's generator, in float32.
 */
export function sampleLatentDistribution(
  parameters: Float32Array,
  generator: Mt19937,
): Float32Array {
  const half = parameters.length / 2;
  const noise = randnFrom(generator, [half]);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const logvar = Math.min(Math.max(parameters[half + i], -30), 20);
    const std = Math.fround(Math.exp(Math.fround(0.5 * logvar)));
    out[i] = parameters[i] + Math.fround(std * noise[i]);
  }
  return out;
}

/** `x` (one image's latents) repeated `n` times, image-major. */
export function repeatImages(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(x.length * n);
  for (let b = 0; b < n; b++) out.set(x, b * x.length);
  return out;
}

/**
 * Latent blending (diffusers' inpainting with a UNet or transformer that does not take the mask):
 * `(1 − mask)·known + mask·latents`, the mask repeated over what follows it (a `[h, w]` plane over
 * every channel and image; one image's whole mask over every image).
 */
export function blendKnown(
  latents: Float32Array,
  known: Float32Array,
  mask: Float32Array,
): Float32Array {
  const plane = mask.length;
  return latents.map((x, k) => {
    const m = mask[k % plane];
    return Math.fround(1 - m) * known[k] + m * x;
  });
}

/**
 * A VAE encoder graph in either Optimum era: `sample` → `latent_parameters` (mean and log-variance,
 * sampled here with the request's generator) or, before Optimum 1.23, `latent_sample` (sampled
 * inside the graph; a draw of the same size is still taken from the generator, so the noise drawn
 * after it is the one diffusers draws).
 */
export class VaeEncoder {
  readonly #input: TensorInfo;
  readonly #output: "latent_parameters" | "latent_sample";

  constructor(
    private readonly session: Session,
    private readonly backend: Backend,
    readonly label = "vae_encoder/model.onnx",
  ) {
    // Rank 5 (`[B, 3, T, H, W]`): a video autoencoder such as Qwen-Image's, given one frame.
    const inputs = matchInputs(label, session, [
      { name: "sample", types: ["float32", "float16"], ranks: [4, 5] },
    ]);
    this.#input = inputs.get("sample")!;
    const names = session.outputs.map((t) => t.name);
    this.#output = names.includes("latent_parameters") ? "latent_parameters" : "latent_sample";
    if (!names.includes(this.#output)) {
      throw new InterfaceMismatchError(
        `Cannot drive ${label}: expected an output latent_parameters (or latent_sample); found ${
          names.join(", ")
        }`,
      );
    }
  }

  /**
   * One image's latents `[1, C, H/s, W/s]` (unscaled) from its `[1, 3, H, W]` pixels in [−1, 1],
   * drawing the sample's noise from `generator`.
   */
  async encode(
    pixels: Float32Array,
    width: number,
    height: number,
    generator: Mt19937,
  ): Promise<Float32Array> {
    const type = this.#input.type as "float32" | "float16";
    const shape = this.#input.shape.length === 5 ? [1, 3, 1, height, width] : [1, 3, height, width];
    const out = await this.session.run({ sample: this.backend.tensor(type, pixels, shape) });
    const tensor = out[this.#output];
    const values = await readFloat32(tensor);
    for (const t of Object.values(out)) t.dispose();
    if (this.#output === "latent_parameters") return sampleLatentDistribution(values, generator);
    randnFrom(generator, [values.length]);
    return values;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** What {@linkcode editSetup} needs to know of a family. */
export interface EditFamily {
  /** The full schedule of the request's `steps`. */
  full: SchedulerRun;
  steps: number;
  n: number;
  width: number;
  height: number;
  /** Pixels per latent cell. */
  scale: number;
  /** Latent channels of one image. */
  channels: number;
  /**
   * How `n` images' `[C, h, w]` latents become what the denoiser steps on (Qwen-Image packs 2×2
   * patches into tokens); absent: as they are. The noise is drawn unpacked, as diffusers does.
   */
  pack?: (latents: Float32Array, n: number) => Float32Array;
  rounding: StrengthRounding;
  /**
   * One image's normalised latents (as the denoiser sees them) from its `[1, 3, H, W]` pixels,
   * drawing the encoder's sample from `generator`.
   */
  encode(pixels: Float32Array, generator: Mt19937): Promise<Float32Array>;
  /**
   * diffusers' SD inpainting starts from pure noise (times `init_noise_sigma`) at strength 1; its
   * img2img and flow pipelines noise the image at every strength.
   */
  pureNoiseAtFullStrength: boolean;
}

/**
 * The schedule and initial latents of an edit for a denoiser that takes latents only, with the
 * generator's draws in diffusers' order: the image's encoder sample, the noise, and (inpainting)
 * the masked image's encoder sample, which diffusers' inpainting pipelines draw even where the
 * denoiser does not use it (a draw of its size stands in for it here). With a mask, `afterStep`
 * blends the image re-noised to the run's next level back into the kept region (the image itself
 * after the last step), and previews show the image's own latents there.
 */
export function editSetup(
  edit: EditInput,
  f: EditFamily,
  params: MemberSetup["params"],
): MemberSetup {
  checkEdit(edit, f.width, f.height);
  const run = startAt(f.full, editStart(f.steps, edit.strength, f.rounding));
  const setup: MemberSetup = {
    params,
    run,
    initialLatents: async (generator) => {
      const pack = f.pack ?? ((x: Float32Array) => x);
      const image = await f.encode(imagePixels(edit.image), generator);
      const known = pack(repeatImages(image, f.n), f.n);
      const noise = pack(randnFrom(generator, [known.length]), f.n);
      if (!edit.mask) return run.addNoise(known, noise, 0);
      randnFrom(generator, [image.length]);
      const cells = latentMask(edit.mask, f.width, f.height, f.scale);
      // One image's mask, laid out as its latents (blendKnown repeats it for each image).
      const plane = f.pack ? pack(repeatImages(cells, f.channels), 1) : cells;
      const last = run.timesteps.length - 1;
      setup.afterStep = (x, i) =>
        blendKnown(x, i < last ? run.addNoise(known, noise, i + 1) : known, plane);
      setup.previewLatents = (x0) => blendKnown(x0, known, plane);
      return f.pureNoiseAtFullStrength && edit.strength === 1
        ? noise.map((x) => x * run.initNoiseSigma)
        : run.addNoise(known, noise, 0);
    },
  };
  return setup;
}
