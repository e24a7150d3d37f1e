/**
 * `POST /v1/chat/completions` answering with images (vLLM-Omni text-to-image example).
 *
 * @module
 */
import type { Engine } from "../engine.ts";
import { badRequest, validationError } from "../errors.ts";
import { ChatImageParamsSchema } from "../spec/schemas.gen.ts";
import type { components } from "../spec/types.gen.ts";
import { generate, type Generated, type ServingConfig } from "./generation.ts";

type ChatCompletionRequest = components["schemas"]["ChatCompletionRequest"];
type ChatCompletionResponse = components["schemas"]["ChatCompletionResponse"];
type ChatImageParams = components["schemas"]["ChatImageParams"];

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

/** Runs a chat-completion image request. */
export async function createChatCompletion(
  req: ChatCompletionRequest,
  deps: { engine: Engine; config: ServingConfig },
  context: { signal?: AbortSignal },
): Promise<{ body: ChatCompletionResponse; generated: Generated }> {
  deps.engine.pipeline();
  if (req.stream) {
    throw badRequest("stream=true is not supported for image generation by this server.", "stream");
  }
  // The openai SDK flattens extra_body into the top level; curl sends it nested. Nested wins.
  const topLevel = ChatImageParamsSchema.safeParse(req);
  if (!topLevel.success) throw validationError(topLevel.error);
  const nested = req.extra_body ?? {};
  const params: ChatImageParams = { ...topLevel.data, ...stripNulls(nested) };
  const prompt = promptFromMessages(req.messages);
  if (!prompt) throw badRequest("No text prompt found in messages", "messages");
  const generated = await generate(deps.engine, deps.config, {
    prompt,
    negativePrompt: params.negative_prompt,
    size: params.size,
    width: params.width,
    height: params.height,
    n: params.num_outputs_per_prompt,
    steps: params.num_inference_steps,
    guidanceScale: params.guidance_scale,
    trueCfgScale: params.true_cfg_scale,
    cfgTruncation: params.cfg_truncation,
    cfgNormalization: params.cfg_normalization,
    seed: params.seed,
    scheduler: params.scheduler,
    lora: params.lora,
  }, { format: "png", signal: context.signal });
  const promptTokens = prompt.split(/\s+/).length;
  return {
    generated,
    body: {
      id: `chatcmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: deps.config.servedModelName,
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: generated.images.map((bytes) => ({
            type: "image_url",
            image_url: { url: `data:image/png;base64,${bytes.toBase64()}` },
          })),
        },
        finish_reason: "stop",
      }],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: generated.images.length,
        total_tokens: promptTokens + generated.images.length,
      },
      seed: Number(generated.result.seed),
    },
  };
}

function stripNulls<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== null && v !== undefined),
  ) as Partial<T>;
}
