/**
 * `POST /v1/images/generations`: the validated body is planned, run, and answered as JSON or as
 * OpenAI's image stream.
 *
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../../app_env.ts";
import type { AppDeps } from "../../deps.ts";
import { ImageGenerationRequestSchema } from "../../spec/schemas.gen.ts";
import { requestContext, sse } from "../sse.ts";
import { planImages } from "./plan.ts";
import { createImages, imageStreamShape, streamImages } from "./respond.ts";

const route = createRoute({
  method: "post",
  path: "/v1/images/generations",
  request: {
    body: {
      required: true,
      content: { "application/json": { schema: ImageGenerationRequestSchema } },
    },
  },
  responses: { 200: { description: "Images" } },
});

/** Adds the route to `app`. */
export function imagesRoute(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const plan = await planImages(c.req.valid("json"), deps);
    const request = requestContext(c, plan.stream);
    if (plan.stream) return sse(c, streamImages(plan, deps, request), imageStreamShape, deps.log);
    const baseUrl = deps.config.publicUrl || deps.live.listenUrl;
    return c.json(await createImages(plan, deps, request, baseUrl), 200);
  });
}
