/**
 * `POST /v1/images/edits`: the body (multipart or JSON) is read, planned, run, and answered as
 * JSON or as OpenAI's image stream (`image_edit.*` events), as generations are. Documented in
 * openapi.yaml; read by hand rather than by a route schema, since one schema cannot check both
 * body types.
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../../app_env.ts";
import type { AppDeps } from "../../deps.ts";
import { createImages, imageStreamShape, streamImages } from "../images/respond.ts";
import { requestContext, sse } from "../sse.ts";
import { planEdit } from "./plan.ts";
import { readEdit } from "./read.ts";

/** The route's path; its body cap is larger than the other routes' (`request_limits.ts`). */
export const EDITS_PATH = "/v1/images/edits";

/** Adds the route to `app`. */
export function editsRoute(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  app.post(EDITS_PATH, async (c) => {
    const edit = await readEdit({
      contentType: c.req.header("content-type"),
      json: () => c.req.json(),
      formData: () => c.req.formData(),
    });
    const plan = await planEdit(edit, deps);
    const request = requestContext(c, plan.stream);
    if (plan.stream) return sse(c, streamImages(plan, deps, request), imageStreamShape, deps.log);
    const baseUrl = deps.config.publicUrl || deps.live.listenUrl;
    return c.json(await createImages(plan, deps, request, baseUrl), 200);
  });
}
