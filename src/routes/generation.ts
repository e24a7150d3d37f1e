/**
 * The two generation routes, `POST /v1/images/generations` and `POST /v1/chat/completions`:
 * validated bodies in, JSON or a server-sent event stream out.
 *
 * @module
 */
import { createRoute, type OpenAPIHono, type z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppEnv } from "../app_env.ts";
import type { Logger } from "../log.ts";
import type { GenerateOptions } from "../../compute/mod.ts";
import { toApiError } from "../error_handler.ts";
import {
  type ChatDeps,
  createChatCompletion,
  planChat,
  streamChatCompletion,
} from "../serving/chat.ts";
import type { SseEvent } from "../serving/event_channel.ts";
import type { Generated } from "../serving/generation.ts";
import { createImages, type ImagesDeps, planImages, streamImages } from "../serving/images.ts";
import { ChatCompletionRequestSchema, ImageGenerationRequestSchema } from "../spec/schemas.gen.ts";

const jsonBody = <S extends z.ZodType>(schema: S) => ({
  body: { required: true, content: { "application/json": { schema } } },
});

/**
 * Sends `events` as a server-sent event stream. An error after the stream started becomes an
 * error event (the status line has already gone); a client that left is logged as 499.
 */
function sse(
  c: Context<AppEnv>,
  events: (onDone: (g: Generated) => void) => AsyncIterable<SseEvent>,
  errorEvent: (body: Record<string, unknown>) => SseEvent,
  log: Logger,
  end?: SseEvent,
) {
  let ended!: (status: number) => void;
  c.set("streamEnded", new Promise<number>((resolve) => (ended = resolve)));
  return streamSSE(c, async (stream) => {
    let status = 200;
    try {
      for await (const e of events((g) => c.set("generated", g))) await stream.writeSSE(e);
    } catch (err) {
      const error = toApiError(err);
      status = error.status;
      if (status >= 500) {
        log.error(`request failed: ${(err as Error)?.stack ?? err}`, { id: c.get("requestId") });
      }
      if (status !== 499) await stream.writeSSE(errorEvent(error.body()));
    }
    if (end && status !== 499) await stream.writeSSE(end);
    ended(c.req.raw.signal.aborted ? 499 : status);
  });
}

/** Adds both generation routes to `app`. */
export function generationRoutes(
  app: OpenAPIHono<AppEnv>,
  deps: ImagesDeps & ChatDeps & { log: Logger; config: { publicUrl: string } },
): void {
  /** vLLM-Omni logs the prompt at debug level; so do we. */
  const logRequest = (c: Context<AppEnv>, options: GenerateOptions, stream: boolean) =>
    deps.log.debug("generation request", {
      id: c.get("requestId"),
      prompt: options.prompt,
      negative_prompt: options.negativePrompt,
      size: `${options.width}x${options.height}`,
      n: options.n,
      steps: options.steps,
      guidance_scale: options.guidanceScale,
      seed: options.seed === undefined ? undefined : String(options.seed),
      lora: options.lora?.map((l) => `${l.name ?? l.id}@${l.scale}`).join(","),
      stream,
    });
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/images/generations",
      request: jsonBody(ImageGenerationRequestSchema),
      responses: { 200: { description: "Images" } },
    }),
    async (c) => {
      const plan = await planImages(c.req.valid("json"), deps);
      logRequest(c, plan.options, plan.stream);
      const signal = c.req.raw.signal;
      if (plan.stream) {
        return sse(
          c,
          (onDone) => streamImages(plan, deps, signal, onDone),
          (body) => ({
            event: "error",
            data: JSON.stringify({ type: "error", error: body.error }),
          }),
          deps.log,
        );
      }
      const { body, generated } = await createImages(plan, deps, {
        baseUrl: deps.config.publicUrl,
        signal,
      });
      c.set("generated", generated);
      return c.json(body, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/chat/completions",
      request: jsonBody(ChatCompletionRequestSchema),
      responses: { 200: { description: "Chat completion with images" } },
    }),
    async (c) => {
      const plan = await planChat(c.req.valid("json"), deps);
      logRequest(c, plan.options, plan.stream);
      const signal = c.req.raw.signal;
      if (plan.stream) {
        return sse(
          c,
          (onDone) => streamChatCompletion(plan, deps, signal, onDone),
          (body) => ({ data: JSON.stringify({ object: "error", ...body }) }),
          deps.log,
          { data: "[DONE]" },
        );
      }
      const { body, generated } = await createChatCompletion(plan, deps, { signal });
      c.set("generated", generated);
      return c.json(body, 200);
    },
  );
}
