/**
 * `POST /v1/chat/completions` answering with images (vLLM-Omni text-to-image example), its
 * request read: the one place its fields are read, turned into a checked plan. An `image_url` part
 * in a user message makes it an edit of that image, checked as `/v1/images/edits` checks one. No
 * Hono types here.
 *
 * @module
 */
import { type GenerateOptions, MAX_PROMPT_CHARS } from "../../../compute/mod.ts";
import type { EngineLike, ServingConfig } from "../../deps.ts";
import type { Logger } from "../../log.ts";
import { badRequest, validationError } from "../../errors.ts";
import { ChatImageParamsSchema } from "../../spec/schemas.gen.ts";
import type { components } from "../../spec/types.gen.ts";
import { dataUrlBytes, type Upload } from "../edits/read.ts";
import { checkImageCount, editOptions } from "../edits/plan.ts";
import { type GenerationFields, toGenerateOptions } from "../fields.ts";

type ChatCompletionRequest = components["schemas"]["ChatCompletionRequest"];
type ChatImageParams = components["schemas"]["ChatImageParams"];

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

/**
 * The images of the user messages' `image_url` parts (data URLs), in order, each named by its
 * place for errors (`messages[1].content[0].image_url.url`).
 */
export function imagesFromMessages(messages: ChatCompletionRequest["messages"]): Upload[] {
  return messages.flatMap((m, i) =>
    m.role === "user" && Array.isArray(m.content)
      ? m.content.flatMap((part, j) => {
        if (part.type !== "image_url") return [];
        const param = `messages[${i}].content[${j}].image_url.url`;
        const url = part.image_url?.url;
        if (typeof url !== "string") throw badRequest(`${param} is missing.`, param);
        return [{ bytes: dataUrlBytes(url, param), param }];
      })
      : []
  );
}

/** The prompt of a request's messages, which must hold some text, and not too much. */
function checkedPrompt(messages: ChatCompletionRequest["messages"]): string {
  const prompt = promptFromMessages(messages);
  if (!prompt) throw badRequest("No text prompt found in messages", "messages");
  if (prompt.length > MAX_PROMPT_CHARS) {
    throw badRequest(
      `The prompt (the user messages joined) has ${prompt.length} characters; at most ${MAX_PROMPT_CHARS} are allowed.`,
      "messages",
    );
  }
  return prompt;
}

/** Validates a chat request against the loaded model and the server's limits. */
export async function planChat(
  req: ChatCompletionRequest,
  deps: { engine: EngineLike; config: ServingConfig; log?: Pick<Logger, "warning"> },
): Promise<ChatPlan> {
  const model = deps.engine.model();
  if (!req.stream && req.stream_options) {
    throw badRequest("stream_options is only allowed with stream=true.", "stream_options");
  }
  // The openai SDK flattens extra_body into the top level; curl sends it nested. Nested wins.
  const topLevel = ChatImageParamsSchema.safeParse(req);
  if (!topLevel.success) throw validationError(topLevel.error);
  const params: ChatImageParams = { ...topLevel.data, ...stripNulls(req.extra_body ?? {}) };
  const prompt = checkedPrompt(req.messages);
  const images = imagesFromMessages(req.messages);
  const fields: GenerationFields = {
    ...params,
    n: params.num_outputs_per_prompt,
    model: req.model,
  };
  if (images.length > 0) checkImageCount(images.length, model, deps.config);
  return {
    options: images.length > 0
      ? await editOptions(
        prompt,
        fields,
        params.strength,
        { image: images[0] },
        model,
        deps.config,
        deps.log,
      )
      : await toGenerateOptions(prompt, fields, model, deps.config, deps.log),
    model: req.model && deps.config.lora?.names.includes(req.model)
      ? req.model
      : deps.config.servedModelName,
    stream: req.stream === true,
    includeUsage: req.stream_options?.include_usage === true,
    includeProgress: req.stream_options?.include_progress === true,
  };
}

function stripNulls<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => v !== null && v !== undefined),
  ) as Partial<T>;
}
