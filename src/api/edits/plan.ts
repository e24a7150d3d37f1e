/**
 * `POST /v1/images/edits`, its plan: a read request (`read.ts`) checked against the loaded model
 * and the server's limits, its image and mask decoded at the output size, in the order the spec
 * documents: the model can edit, how many images (before any is decoded), each file's header
 * (format, pixels; the mask's alpha and size), the size and generation fields, then the pixels.
 * No Hono types here.
 *
 * @module
 */
import type { EditInput, GenerateOptions } from "../../../compute/mod.ts";
import {
  decodeImage,
  decodeMask,
  type ImageHeader,
  readImageHeader,
} from "../../../compute/image/mod.ts";
import type { EngineLike, ServingConfig } from "../../deps.ts";
import type { Logger } from "../../log.ts";
import type { ModelInfo } from "../../engine/protocol.ts";
import { ApiError, badRequest } from "../../errors.ts";
import { checkModel, type GenerationFields, toGenerateOptions } from "../fields.ts";
import { answerPlan, checkCombinations, type ImagesPlan } from "../images/plan.ts";
import type { EditRequest, Upload } from "./read.ts";

/** `strength` when a request leaves it out (OpenAI's edits have none; diffusers' default). */
export const DEFAULT_STRENGTH = 0.8;

/** The images of an edit, checked and decoded. */
export interface EditImages {
  /** The image to edit, as the request sent it. */
  image: Upload;
  mask?: Upload;
}

/**
 * Refuses more images than the model takes, before any is decoded: a model that cannot edit
 * (`maxEditImages` 0) says so.
 */
export function checkImageCount(count: number, model: ModelInfo, config: ServingConfig): void {
  if (model.maxEditImages === 0) {
    throw new ApiError(
      400,
      `${config.servedModelName} cannot edit images: it has no VAE encoder to start from an image. Use /v1/images/generations, or serve a model with one.`,
      { param: "image", code: "model_cannot_edit" },
    );
  }
  if (count > model.maxEditImages) {
    throw badRequest(
      `Received ${count} input images. At most ${model.maxEditImages} ${
        model.maxEditImages === 1 ? "image is" : "images are"
      } supported by this model.`,
      "image",
    );
  }
}

/**
 * The output size of `size: auto`: the input's, scaled down to `maxPixels` when larger (aspect
 * kept), each side rounded to the model's multiple (down where rounding would pass the limit).
 */
export function autoSize(
  input: { width: number; height: number },
  multiple: number,
  maxPixels: number,
): string {
  const scale = Math.min(1, Math.sqrt(maxPixels / (input.width * input.height)));
  const side = (v: number, round: (x: number) => number) =>
    Math.max(multiple, round((v * scale) / multiple) * multiple);
  let [w, h] = [side(input.width, Math.round), side(input.height, Math.round)];
  if (w * h > maxPixels) [w, h] = [side(input.width, Math.floor), side(input.height, Math.floor)];
  return `${w}x${h}`;
}

/** Reads the mask's header: it must have alpha and the image's width and height. */
async function checkMask(mask: Upload, image: ImageHeader): Promise<void> {
  const header = await readImageHeader(mask.bytes, mask.param);
  if (!header.hasAlpha) {
    throw badRequest(
      `${mask.param} has no alpha channel: its transparent pixels mark where to edit (a PNG with alpha).`,
      mask.param,
    );
  }
  if (header.width !== image.width || header.height !== image.height) {
    throw badRequest(
      `${mask.param} is ${header.width}x${header.height} but the image is ${image.width}x${image.height}; they must be the same size.`,
      mask.param,
    );
  }
}

/**
 * Checks an edit's images against the model and turns them into the engine's `edit` at the
 * size the generation fields ask for (`auto` or absent: the input's, see {@linkcode autoSize}).
 * Returns the generation options with `edit` set. Shared by the edits endpoint and chat.
 */
export async function editOptions(
  prompt: string,
  fields: GenerationFields,
  strength: number | null | undefined,
  { image, mask }: EditImages,
  model: ModelInfo,
  config: ServingConfig,
  log?: Pick<Logger, "warning">,
): Promise<GenerateOptions> {
  const header = await readImageHeader(image.bytes, image.param);
  if (mask) await checkMask(mask, header);
  const auto = (!fields.size || fields.size === "auto") && !fields.width && !fields.height;
  const options = await toGenerateOptions(
    prompt,
    auto
      ? { ...fields, size: autoSize(header, model.sizeMultiple, config.maxImagePixels) }
      : fields,
    model,
    config,
    log,
  );
  const size = { width: options.width!, height: options.height! };
  const edit: EditInput = {
    image: await decodeImage(image.bytes, size, image.param),
    mask: mask && await decodeMask(mask.bytes, size, mask.param),
    strength: strength ?? DEFAULT_STRENGTH,
  };
  return {
    ...options,
    steps: options.steps ?? editSteps(model.defaults.steps, edit.strength),
    edit,
  };
}

/** The most `num_inference_steps` a request may name (`openapi.yaml`'s maximum). */
const MOST_STEPS = 200;

/**
 * The steps an edit that names none runs: the model's default, raised until `strength` of them is
 * at least one step (a one-step Turbo model at strength 0.8 runs 2, of which 1 from the noised
 * image), so OpenAI's edit examples, which send no steps, work on every model. Never past what a
 * request may name: a strength too small for that, or an edit that names too few steps for its
 * strength, is the pipeline's 400.
 */
export function editSteps(defaultSteps: number, strength: number): number {
  if (defaultSteps * strength >= 1) return defaultSteps;
  let steps = Math.ceil(1 / strength);
  if (steps * strength < 1) steps++;
  return steps <= MOST_STEPS ? steps : defaultSteps;
}

/** Validates a read edit request against the loaded model and the server's limits. */
export async function planEdit(
  { fields, images, mask }: EditRequest,
  deps: { engine: EngineLike; config: ServingConfig; log?: Pick<Logger, "warning"> },
): Promise<ImagesPlan> {
  const model = deps.engine.model(); // 503 before anything else, as generations
  checkModel(fields.model, deps.config);
  checkCombinations(fields);
  checkImageCount(images.length, model, deps.config);
  const options = await editOptions(
    fields.prompt,
    {
      negative_prompt: fields.negative_prompt,
      size: fields.size,
      n: fields.n,
      num_inference_steps: fields.num_inference_steps,
      guidance_scale: fields.guidance_scale,
      true_cfg_scale: fields.true_cfg_scale,
      cfg_truncation: fields.cfg_truncation,
      cfg_normalization: fields.cfg_normalization,
      seed: fields.seed,
      scheduler: fields.scheduler,
      lora: fields.lora,
      cache: fields.cache,
      model: fields.model,
    },
    fields.strength,
    { image: images[0], mask },
    model,
    deps.config,
    deps.log,
  );
  return answerPlan(fields, options, "image_edit");
}
