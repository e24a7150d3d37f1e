/**
 * `POST /v1/chat/completions` answering with images (vLLM-Omni text-to-image example), whole or
 * as `chat.completion.chunk` events the way vLLM-Omni streams them.
 *
 * @module
 */
import { type GenerateOptions, MAX_PROMPT_CHARS } from "../../compute/mod.ts";
import type { Engine } from "../engine/engine.ts";
import { badRequest, validationError } from "../errors.ts";
import { ChatImageParamsSchema } from "../spec/schemas.gen.ts";
import type { components } from "../spec/types.gen.ts";
import { EventChannel, type SseEvent } from "./event_channel.ts";
import { generate, type Generated, type ServingConfig, toGenerateOptions } from "./generation.ts";

type ChatCompletionRequest = components["schemas"]["ChatCompletionRequest"];
type ChatCompletionResponse = components["schemas"]["ChatCompletionResponse"];
type ChatImageParams = components["schemas"]["ChatImageParams"];

/** What the endpoint needs from the server. */
export interface ChatDeps {
  engine: Engine;
  config: ServingConfig;
}

/** A checked chat request, ready to run. */
export interface ChatPlan {
  options: GenerateOptions;
  /** What the answer calls the model: the adapter's name when `model` named one (as vLLM). */
  model: string;
  stream: boolean;
  includeUsage: boolean;
  includeProgress: boolean;
}

/** The prompt: text of the user messages joined with spaces (string or `{type:"text"}` parts). */
export function promptFromMessages(messages: ChatCompletionRequest["messages"]): string {
  const texts = messages.filter((m) => m.role === "user").flatMap((m) => {
    if (typeof m.content === "string") return [m.content];
    if (Array.isArray(m.content)) {
      return m.content.flatMap((part) =>
        part.type === "text" && typeof part.text === "string" ? [part.text] : []
      );
    }
    return [];
  });
  return texts.join(" ").trim();
}

/** Validates a chat request against the loaded model and the server's limits. */
export async function planChat(req: ChatCompletionRequest, deps: ChatDeps): Promise<ChatPlan> {
  const model = deps.engine.model();
  if (!req.stream && req.stream_options) {
    throw badRequest("stream_options is only allowed with stream=true.", "stream_options");
  }
  // The openai SDK flattens extra_body into the top level; curl sends it nested. Nested wins.
  const topLevel = ChatImageParamsSchema.safeParse(req);
  if (!topLevel.success) throw validationError(topLevel.error);
  const params: ChatImageParams = { ...topLevel.data, ...stripNulls(req.extra_body ?? {}) };
  const prompt = promptFromMessages(req.messages);
  if (!prompt) throw badRequest("No text prompt found in messages", "messages");
  if (prompt.length > MAX_PROMPT_CHARS) {
    throw badRequest(
      `The prompt (the user messages joined) has ${prompt.length} characters; at most ${MAX_PROMPT_CHARS} are allowed.`,
      "messages",
    );
  }
  return {
    options: await toGenerateOptions(
      prompt,
      { ...params, n: params.num_outputs_per_prompt, model: req.model },
      model,
      deps.config,
    ),
    model: req.model && deps.config.lora?.names.includes(req.model)
      ? req.model
      : deps.config.servedModelName,
    stream: req.stream === true,
    includeUsage: req.stream_options?.include_usage === true,
    includeProgress: req.stream_options?.include_progress === true,
  };
}

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
  deps: ChatDeps,
  context: { signal?: AbortSignal },
): Promise<{ body: ChatCompletionResponse; generated: Generated }> {
  const generated = await generate(deps.engine, deps.config, plan.options, {
    format: "png",
    signal: context.signal,
  });
  return {
    generated,
    body: {
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
      seed: Number(generated.result.seed),
    },
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
  deps: ChatDeps,
  signal: AbortSignal | undefined,
  onDone: (generated: Generated) => void,
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
      ? ({ step, total }) =>
        send({
          choices: [],
          progress: { step: step + 1, total, elapsed_ms: Math.round(performance.now() - started) },
        })
      : undefined,
  };
  generate(deps.engine, deps.config, options, { format: "png", signal }).then((generated) => {
    send({
      choices: [{
        index: 0,
        delta: { role: "assistant", content: imageParts(generated.images) },
        finish_reason: "stop",
      }],
      modality: "image",
      seed: Number(generated.result.seed),
    });
    if (plan.includeUsage) {
      send({ choices: [], usage: usage(plan.options.prompt, generated.images.length) });
    }
    onDone(generated);
    channel.close();
  }).catch((e) => channel.fail(e));
  return channel;
}

function stripNulls<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== null && v !== undefined),
  ) as Partial<T>;
}
