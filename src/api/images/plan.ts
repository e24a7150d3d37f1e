/**
 * `POST /v1/images/generations`, its request read: the one place its fields are read, turned into
 * a checked plan (engine options plus how to answer; the answer's part is shared with edits). No
 * Hono types here.
 *
 * @module
 */
import { type GenerateOptions, type ImageFormat, MAX_SIDE } from "../../../compute/mod.ts";
import type { EngineLike, ServingConfig } from "../../deps.ts";
import type { Logger } from "../../log.ts";
import { badRequest } from "../../errors.ts";
import type { components } from "../../spec/types.gen.ts";
import { checkModel, toGenerateOptions } from "../fields.ts";

type ImageGenerationRequest = components["schemas"]["ImageGenerationRequest"];

/** The fields of how to answer, the same on generations and edits. */
export type AnswerFields = Pick<
  ImageGenerationRequest,
  | "background"
  | "stream"
  | "stream_options"
  | "response_format"
  | "output_format"
  | "output_compression"
  | "partial_images"
>;

/** Which OpenAI image stream a plan answers with: its events' type prefix. */
export type ImageEvents = "image_generation" | "image_edit";

/** A checked request, ready to run. */
export interface ImagesPlan {
  options: GenerateOptions;
  format: ImageFormat;
  compression?: number;
  useUrl: boolean;
  stream: boolean;
  partialImages: number;
  includeProgress: boolean;
  events: ImageEvents;
}

/** Fields that only make sense together, or not at all. */
export function checkCombinations(req: AnswerFields): void {
  if (req.background === "transparent") {
    throw badRequest(
      "background='transparent' is not supported: diffusion output has no alpha channel.",
      "background",
    );
  }
  if (req.stream === true && req.response_format === "url") {
    throw badRequest(
      "stream=true answers with b64_json events; response_format='url' cannot be streamed.",
      "response_format",
    );
  }
  if (req.stream !== true && req.stream_options) {
    throw badRequest("stream_options is only allowed with stream=true.", "stream_options");
  }
}

/**
 * The plan of checked engine `options` answered as `req` asks: the encoder's own side limit is
 * checked here, before any work (it would fail only after the generation).
 */
export function answerPlan(
  req: AnswerFields,
  options: GenerateOptions,
  events: ImageEvents,
): ImagesPlan {
  const format: ImageFormat = req.output_format === "jpg" ? "jpeg" : req.output_format ?? "png";
  const side = Math.max(options.width!, options.height!);
  if (side > MAX_SIDE[format]) {
    throw badRequest(
      `output_format '${format}' allows at most ${MAX_SIDE[format]} pixels per side; ` +
        `${options.width}x${options.height} needs ${side}. Use png or a smaller size.`,
      "size",
    );
  }
  const stream = req.stream === true;
  return {
    options,
    format,
    compression: req.output_compression ?? undefined,
    useUrl: req.response_format === "url",
    stream,
    partialImages: stream ? req.partial_images ?? 0 : 0,
    includeProgress: req.stream_options?.include_progress === true,
    events,
  };
}

/** Validates a request against the loaded model and the server's limits; throws ApiErrors. */
export async function planImages(
  req: ImageGenerationRequest,
  deps: { engine: EngineLike; config: ServingConfig; log?: Pick<Logger, "warning"> },
): Promise<ImagesPlan> {
  const model = deps.engine.model(); // 503 before anything else, as vLLM-Omni
  checkModel(req.model, deps.config);
  checkCombinations(req);
  const options = await toGenerateOptions(
    req.prompt,
    {
      negative_prompt: req.negative_prompt,
      size: req.size,
      n: req.n,
      num_inference_steps: req.num_inference_steps,
      guidance_scale: req.guidance_scale,
      true_cfg_scale: req.true_cfg_scale,
      cfg_truncation: req.cfg_truncation,
      cfg_normalization: req.cfg_normalization,
      seed: req.seed,
      scheduler: req.scheduler,
      lora: req.lora,
      cache: req.cache,
      model: req.model,
    },
    model,
    deps.config,
    deps.log,
  );
  return answerPlan(req, options, "image_generation");
}
