/**
 * `POST /v1/chat/completions`: the validated body is planned, run, and answered as a whole
 * completion or as a `chat.completion.chunk` stream ended by `data: [DONE]`.
 *
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../../app_env.ts";
import type { AppDeps } from "../../deps.ts";
import { ChatCompletionRequestSchema } from "../../spec/schemas.gen.ts";
import { requestContext, sse, type StreamShape } from "../sse.ts";
import { planChat } from "./plan.ts";
import { createChatCompletion, streamChatCompletion } from "./respond.ts";

const route = createRoute({
  method: "post",
  path: "/v1/chat/completions",
  request: {
    body: {
      required: true,
      content: { "application/json": { schema: ChatCompletionRequestSchema } },
    },
  },
  responses: { 200: { description: "Chat completion with images" } },
});

/** vLLM's stream reports an error as a data event and ends with `data: [DONE]`. */
const shape: StreamShape = {
  errorEvent: (body) => ({ data: JSON.stringify({ object: "error", ...body }) }),
  end: { data: "[DONE]" },
};

/** Adds the route to `app`. */
export function chatRoute(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const plan = await planChat(c.req.valid("json"), deps);
    const request = requestContext(c, plan.stream);
    if (plan.stream) return sse(c, streamChatCompletion(plan, deps, request), shape, deps.log);
    return c.json(await createChatCompletion(plan, deps, request), 200);
  });
}
