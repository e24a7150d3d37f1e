/**
 * `POST /v1/images/generations` and `POST /v1/images/edits`, their answers: the whole
 * `ImagesResponse`, or OpenAI's image stream (`image_generation.partial_image` previews, then
 * `image_generation.completed` per image; `image_edit.*` for edits). No Hono types here.
 *
 * @module
 */
import type { GenerateOptions, GenerateResult, Preview, StepInfo } from "../../../compute/mod.ts";
import { encodeImage, MIME_TYPES } from "../../../compute/image/mod.ts";
import type { ImageStore } from "../../image_store.ts";
import type { components } from "../../spec/types.gen.ts";
import { EventChannel, type SseEvent } from "../event_channel.ts";
import {
  encodeResult,
  generate,
  type RequestContext,
  type RunDeps,
  runGeneration,
} from "../run.ts";
import type { StreamShape } from "../sse.ts";
import type { ImagesPlan } from "./plan.ts";

type ImagesResponse = components["schemas"]["ImagesResponse"];

/** What the endpoint needs from the server. */
export interface ImagesDeps extends RunDeps {
  store: ImageStore;
}

/** Runs a planned request and answers with the whole `ImagesResponse`. */
export async function createImages(
  plan: ImagesPlan,
  deps: ImagesDeps,
  request: RequestContext,
  baseUrl: string,
): Promise<ImagesResponse> {
  const generated = await generate(deps, plan.options, plan, request);
  request.outcome.made(generated);
  const url = async (bytes: Uint8Array) =>
    `${baseUrl}/v1/images/files/${await deps.store.put(bytes, MIME_TYPES[plan.format])}`;
  return {
    created: Math.floor(Date.now() / 1000),
    data: await Promise.all(
      generated.images.map(async (bytes) =>
        plan.useUrl
          ? { b64_json: null, url: await url(bytes), revised_prompt: null }
          : { b64_json: bytes.toBase64(), url: null, revised_prompt: null }
      ),
    ),
    size: `${generated.result.width}x${generated.result.height}`,
    output_format: plan.format,
    seed: generated.seed,
  };
}

/** The fields of a completed image's event that describe the generation. */
function completedFields(plan: ImagesPlan, result: GenerateResult, seed: number) {
  const inputTokens = plan.options.prompt.split(/\s+/).length;
  return {
    seed,
    timings: {
      text_encode_ms: Math.round(result.timings.textEncodeMs),
      denoise_ms: Math.round(result.timings.stepMs.reduce((a, b) => a + b, 0)),
      decode_ms: Math.round(result.timings.decodeMs),
      encode_ms: Math.round(result.timings.encodeMs ?? 0),
      cached_steps: result.timings.cachedSteps ?? 0,
    },
    usage: {
      total_tokens: inputTokens + 1,
      input_tokens: inputTokens,
      output_tokens: 1,
      input_tokens_details: { text_tokens: inputTokens, image_tokens: 0 },
    },
  };
}

/** OpenAI's image stream reports an error as an `error` event and has no end marker. */
export const imageStreamShape: StreamShape = {
  errorEvent: (body) => ({
    event: "error",
    data: JSON.stringify({ type: "error", error: body.error }),
  }),
};

/** One image stream's events, pushed to `channel` as the generation goes. */
function imageEvents(plan: ImagesPlan, channel: EventChannel<SseEvent>) {
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
  return {
    async preview(preview: Preview): Promise<void> {
      for (const [index, image] of preview.images.entries()) {
        const bytes = await encodeImage(image, plan.format, plan.compression, { width, height });
        send(`${plan.events}.partial_image`, {
          b64_json: bytes.toBase64(),
          ...common(),
          partial_image_index: preview.index,
          image_index: index,
        });
      }
    },
    progress: ({ step, total, cached }: StepInfo) =>
      send(`${plan.events}.progress`, {
        step: step + 1,
        total,
        elapsed_ms: Math.round(performance.now() - started),
        cached,
      }),
    completed(image: Uint8Array, index: number, fields: Record<string, unknown>): void {
      send(`${plan.events}.completed`, {
        b64_json: image.toBase64(),
        ...common(),
        image_index: index,
        ...fields,
      });
    },
  };
}

/**
 * Runs a planned request as OpenAI's image stream. Events, in order of occurrence (named with the
 * plan's `events` prefix, `image_generation` or `image_edit`): `.progress` per step (our
 * extension, with `stream_options.include_progress`), `.partial_image` per preview and image,
 * `.completed` per image. `image_index` (ours) says which of the `n` images an event belongs to.
 */
export function streamImages(
  plan: ImagesPlan,
  deps: ImagesDeps,
  request: RequestContext,
): AsyncIterable<SseEvent> {
  const channel = new EventChannel<SseEvent>();
  const events = imageEvents(plan, channel);
  // Previews are encoded off the engine's callback, one after another, so they stay in order.
  let previews = Promise.resolve();
  const options: GenerateOptions = {
    ...plan.options,
    previews: plan.partialImages,
    onPreview: (preview) => void (previews = previews.then(() => events.preview(preview))),
    onStep: plan.includeProgress ? events.progress : undefined,
  };
  runGeneration(deps, options, request).then(async (result) => {
    await previews;
    const generated = await encodeResult(deps, result, plan, request.signal);
    const fields = completedFields(plan, result, generated.seed);
    for (const [index, bytes] of generated.images.entries()) events.completed(bytes, index, fields);
    request.outcome.made(generated);
    channel.close();
  }).catch((e) => channel.fail(e));
  return channel;
}
