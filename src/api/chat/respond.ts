/**
 * `POST /v1/chat/completions`, its answers: the whole completion with its images, or
 * `chat.completion.chunk` events the way vLLM-Omni streams them. No Hono types here.
 *
 * @module
 */
import type { GenerateOptions } from "../../../compute/mod.ts";
import type { components } from "../../spec/types.gen.ts";
import { EventChannel, type SseEvent } from "../event_channel.ts";
import { generate, type RequestContext, type RunDeps } from "../run.ts";
import type { ChatPlan } from "./plan.ts";

type ChatCompletionResponse = components["schemas"]["ChatCompletionResponse"];

const completionId = () => `chatcmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;

function usage(prompt: string, images: number) {
  const promptTokens = prompt.split(/\s+/).length;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: images,
    total_tokens: promptTokens + images,
  };
}

const imageParts = (images: Uint8Array[]) =>
  images.map((bytes) => ({
    type: "image_url" as const,
    image_url: { url: `data:image/png;base64,${bytes.toBase64()}` },
  }));

/** Runs a planned chat request and answers with the whole completion. */
export async function createChatCompletion(
  plan: ChatPlan,
  deps: RunDeps,
  request: RequestContext,
): Promise<ChatCompletionResponse> {
  const generated = await generate(deps, plan.options, { format: "png" }, request);
  request.outcome.made(generated);
  return {
    id: completionId(),
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: plan.model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: imageParts(generated.images) },
      finish_reason: "stop",
    }],
    usage: usage(plan.options.prompt, generated.images.length),
    seed: generated.seed,
  };
}

/**
 * Runs a planned chat request as `chat.completion.chunk` events: per step a progress chunk with
 * no choices (our extension, with `stream_options.include_progress`), then one chunk holding
 * the role, every image and `finish_reason: "stop"`, then a usage chunk when
 * `stream_options.include_usage` is set. The caller ends the stream with `data: [DONE]`.
 */
export function streamChatCompletion(
  plan: ChatPlan,
  deps: RunDeps,
  request: RequestContext,
): AsyncIterable<SseEvent> {
  const channel = new EventChannel<SseEvent>();
  const started = performance.now();
  const base = {
    id: completionId(),
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: plan.model,
  };
  const send = (fields: Record<string, unknown>) =>
    channel.push({ data: JSON.stringify({ ...base, ...fields }) });
  const options: GenerateOptions = {
    ...plan.options,
    onStep: plan.includeProgress
      ? ({ step, total, cached }) =>
        send({
          choices: [],
          progress: {
            step: step + 1,
            total,
            elapsed_ms: Math.round(performance.now() - started),
            cached,
          },
        })
      : undefined,
  };
  generate(deps, options, { format: "png" }, request).then((generated) => {
    send({
      choices: [{
        index: 0,
        delta: { role: "assistant", content: imageParts(generated.images) },
        finish_reason: "stop",
      }],
      modality: "image",
      seed: generated.seed,
    });
    if (plan.includeUsage) {
      send({ choices: [], usage: usage(plan.options.prompt, generated.images.length) });
    }
    request.outcome.made(generated);
    channel.close();
  }).catch((e) => channel.fail(e));
  return channel;
}
