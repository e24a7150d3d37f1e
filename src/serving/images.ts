/**
 * `POST /v1/images/generations`: request → checked plan → `ImagesResponse`, or OpenAI's image
 * stream (`image_generation.partial_image` previews, then `image_generation.completed` per
 * image). No Hono types here.
 *
 * @module
 */
import { type GenerateOptions, type ImageFormat, MAX_SIDE } from "../../compute/mod.ts";
import { encodeImage, encodeImages, MIME_TYPES } from "../../compute/image/mod.ts";
import type { Engine } from "../engine/engine.ts";
import { ApiError, badRequest } from "../errors.ts";
import type { ImageStore } from "../image_store.ts";
import type { components } from "../spec/types.gen.ts";
import { EventChannel, type SseEvent } from "./event_channel.ts";
import {
  generate,
  type Generated,
  runGeneration,
  type ServingConfig,
  throwIfClosed,
  toGenerateOptions,
} from "./generation.ts";

type ImageGenerationRequest = components["schemas"]["ImageGenerationRequest"];
type ImagesResponse = components["schemas"]["ImagesResponse"];

/** What the endpoint needs from the server. */
export interface ImagesDeps {
  engine: Engine;
  store: ImageStore;
  config: ServingConfig;
}

/** A checked request, ready to run. */
export interface ImagesPlan {
  options: GenerateOptions;
  format: ImageFormat;
  compression?: number;
  useUrl: boolean;
  stream: boolean;
  partialImages: number;
  includeProgress: boolean;
}

/**
 * Checks that a request's `model`, when given, names the served model (or one of its aliases) or
 * one of its registered LoRA adapters (all listed by `/v1/models`).
 */
export function checkModel(model: string | null | undefined, config: ServingConfig): void {
  if (!model || model === config.servedModelName || config.modelAliases?.includes(model)) return;
  const adapters = config.lora?.names ?? [];
  if (adapters.includes(model)) return;
  throw new ApiError(
    400,
    `Model mismatch: request specifies '${model}' but server is running '${config.servedModelName}'.` +
      (adapters.length ? ` Its LoRA adapters are ${adapters.join(", ")}.` : ""),
    { param: "model", code: "model_not_found" },
  );
}

/** Validates a request against the loaded model and the server's limits; throws ApiErrors. */
export async function planImages(
  req: ImageGenerationRequest,
  deps: ImagesDeps,
): Promise<ImagesPlan> {
  const model = deps.engine.model(); // 503 before anything else, as vLLM-Omni
  checkModel(req.model, deps.config);
  if (req.background === "transparent") {
    throw badRequest(
      "background='transparent' is not supported: diffusion output has no alpha channel.",
      "background",
    );
  }
  const stream = req.stream === true;
  if (stream && req.response_format === "url") {
    throw badRequest(
      "stream=true answers with b64_json events; response_format='url' cannot be streamed.",
      "response_format",
    );
  }
  if (!stream && req.stream_options) {
    throw badRequest("stream_options is only allowed with stream=true.", "stream_options");
  }
  const format: ImageFormat = req.output_format === "jpg" ? "jpeg" : req.output_format ?? "png";
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
      model: req.model,
    },
    model,
    deps.config,
  );
  // The encoder's own limit, checked before any work (it would fail only after the generation).
  const side = Math.max(options.width!, options.height!);
  if (side > MAX_SIDE[format]) {
    throw badRequest(
      `output_format '${format}' allows at most ${MAX_SIDE[format]} pixels per side; ` +
        `${options.width}x${options.height} needs ${side}. Use png or a smaller size.`,
      "size",
    );
  }
  return {
    options,
    format,
    compression: req.output_compression ?? undefined,
    useUrl: req.response_format === "url",
    stream,
    partialImages: stream ? req.partial_images ?? 0 : 0,
    includeProgress: req.stream_options?.include_progress === true,
  };
}

/** Runs a planned request and answers with the whole `ImagesResponse`. */
export async function createImages(
  plan: ImagesPlan,
  deps: ImagesDeps,
  context: { baseUrl: string; signal?: AbortSignal },
): Promise<{ body: ImagesResponse; generated: Generated }> {
  const generated = await generate(deps.engine, deps.config, plan.options, {
    format: plan.format,
    compression: plan.compression,
    signal: context.signal,
  });
  const { result } = generated;
  return {
    generated,
    body: {
      created: Math.floor(Date.now() / 1000),
      data: await Promise.all(generated.images.map(async (bytes) =>
        plan.useUrl
          ? {
            b64_json: null,
            url: `${context.baseUrl}/v1/images/files/${await deps.store.put(
              bytes,
              MIME_TYPES[plan.format],
            )}`,
            revised_prompt: null,
          }
          : { b64_json: bytes.toBase64(), url: null, revised_prompt: null }
      )),
      size: `${result.width}x${result.height}`,
      output_format: plan.format,
      seed: Number(result.seed),
    },
  };
}

/**
 * Runs a planned request as OpenAI's image stream. Events, in order of occurrence:
 * `image_generation.progress` per step (our extension, with `stream_options.include_progress`),
 * `image_generation.partial_image` per preview and image, `image_generation.completed` per
 * image. `image_index` (ours) says which of the `n` images an event belongs to.
 */
export function streamImages(
  plan: ImagesPlan,
  deps: ImagesDeps,
  signal: AbortSignal | undefined,
  onDone: (generated: Generated) => void,
): AsyncIterable<SseEvent> {
  const channel = new EventChannel<SseEvent>();
  const started = performance.now();
  const { width = 0, height = 0 } = plan.options;
  const common = () => ({
    created_at: Math.floor(Date.now() / 1000),
    size: `${width}x${height}`,
    quality: "auto",
    background: "opaque",
    output_format: plan.format,
  });
  const send = (type: string, fields: Record<string, unknown>) =>
    channel.push({ event: type, data: JSON.stringify({ type, ...fields }) });
  // Previews are encoded off the engine's callback, one after another, so they stay in order.
  let previews = Promise.resolve();
  const options: GenerateOptions = {
    ...plan.options,
    previews: plan.partialImages,
    onPreview: (preview) => {
      previews = previews.then(async () => {
        for (const [index, image] of preview.images.entries()) {
          const bytes = await encodeImage(image, plan.format, plan.compression, { width, height });
          send("image_generation.partial_image", {
            b64_json: bytes.toBase64(),
            ...common(),
            partial_image_index: preview.index,
            image_index: index,
          });
        }
      });
    },
    onStep: plan.includeProgress
      ? ({ step, total }) =>
        send("image_generation.progress", {
          step: step + 1,
          total,
          elapsed_ms: Math.round(performance.now() - started),
        })
      : undefined,
  };
  runGeneration(deps.engine, deps.config, options, signal).then(async (result) => {
    await previews;
    throwIfClosed(signal);
    const images = await encodeImages(
      result,
      plan.format,
      plan.compression,
      deps.config.pngWorkers,
    );
    throwIfClosed(signal);
    const inputTokens = plan.options.prompt.split(/\s+/).length;
    for (const [index, bytes] of images.entries()) {
      send("image_generation.completed", {
        b64_json: bytes.toBase64(),
        ...common(),
        image_index: index,
        seed: Number(result.seed),
        timings: {
          text_encode_ms: Math.round(result.timings.textEncodeMs),
          denoise_ms: Math.round(result.timings.stepMs.reduce((a, b) => a + b, 0)),
          decode_ms: Math.round(result.timings.decodeMs),
          encode_ms: Math.round(result.timings.encodeMs ?? 0),
        },
        usage: {
          total_tokens: inputTokens + 1,
          input_tokens: inputTokens,
          output_tokens: 1,
          input_tokens_details: { text_tokens: inputTokens, image_tokens: 0 },
        },
      });
    }
    onDone({ result, images, format: plan.format });
    channel.close();
  }).catch((e) => channel.fail(e));
  return channel;
}
