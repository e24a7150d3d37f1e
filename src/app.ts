/**
 * `buildApp(deps)`: the Hono application. Middleware order: request id and log → auth → body
 * limit → routes; `onError` is the single place errors become the documented body.
 *
 * @module
 */
import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import { swaggerUI } from "@hono/swagger-ui";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { parse } from "yaml";
import type { Engine } from "./engine.ts";
import { ApiError, validationError } from "./errors.ts";
import type { ImageStore } from "./image_store.ts";
import { createChatCompletion } from "./serving/chat.ts";
import type { Generated, ServingConfig } from "./serving/generation.ts";
import { createImages } from "./serving/images.ts";
import { ChatCompletionRequestSchema, ImageGenerationRequestSchema } from "./spec/schemas.gen.ts";

/** Maximum request body size (documented in openapi.yaml). */
export const MAX_BODY_BYTES = 1024 * 1024;
const SPEC_URL = new URL("../openapi.yaml", import.meta.url);

/** Everything the app needs from outside. */
export interface AppDeps {
  engine: Engine;
  store: ImageStore;
  config: ServingConfig & { apiKey?: string; modelRoot: string };
  log?: (line: string) => void;
}

type Env = { Variables: { generated?: Generated } };

const jsonBody = <S extends z.ZodType>(schema: S) => ({
  body: { required: true, content: { "application/json": { schema } } },
});

/** Builds the application. */
export function buildApp(deps: AppDeps): OpenAPIHono<Env> {
  const spec = parse(Deno.readTextFileSync(SPEC_URL));
  const log = deps.log ?? console.log;
  const app = new OpenAPIHono<Env>({
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error);
    },
  });

  app.use(async (c, next) => {
    const started = performance.now();
    const id = c.req.header("x-request-id") ?? crypto.randomUUID();
    await next();
    c.header("x-request-id", id);
    const g = c.get("generated");
    const t = g?.result.timings;
    const gen = g && t
      ? ` images=${g.images.length} size=${g.result.width}x${g.result.height} steps=${g.result.steps} seed=${g.result.seed} text=${
        t.textEncodeMs.toFixed(0)
      }ms denoise=${t.stepMs.reduce((a, b) => a + b, 0).toFixed(0)}ms decode=${
        t.decodeMs.toFixed(0)
      }ms encode=${(t.encodeMs ?? 0).toFixed(0)}ms`
      : "";
    log(
      `${c.req.method} ${c.req.path} ${c.res.status} ${
        (performance.now() - started).toFixed(0)
      }ms id=${id}${gen}`,
    );
  });

  app.use("/v1/*", async (c, next) => {
    if (deps.config.apiKey && c.req.header("authorization") !== `Bearer ${deps.config.apiKey}`) {
      throw new ApiError(401, "Incorrect API key provided.", {
        type: "invalid_request_error",
        code: "invalid_api_key",
      });
    }
    await next();
  });

  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError(413, `Request body exceeds ${MAX_BODY_BYTES} bytes.`, {
          code: "request_too_large",
        });
      },
    }),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/images/generations",
      request: jsonBody(ImageGenerationRequestSchema),
      responses: { 200: { description: "Images" } },
    }),
    async (c) => {
      const { body, generated } = await createImages(c.req.valid("json"), deps, {
        baseUrl: new URL(c.req.url).origin,
        signal: c.req.raw.signal,
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
      const { body, generated } = await createChatCompletion(c.req.valid("json"), deps, {
        signal: c.req.raw.signal,
      });
      c.set("generated", generated);
      return c.json(body, 200);
    },
  );

  app.get("/v1/images/files/:id", (c) => {
    const image = deps.store.get(c.req.param("id"));
    if (!image) throw new ApiError(404, "Image not found or expired.", { code: "not_found" });
    return c.body(image.bytes.slice().buffer, 200, {
      "content-type": image.mime,
      "cache-control": "private, max-age=3600",
    });
  });

  const created = Math.floor(Date.now() / 1000);
  app.get("/v1/models", (c) => {
    const state = deps.engine.state;
    const loaded = state.status === "ready"
      ? {
        family: state.pipeline.family,
        size_multiple: state.pipeline.sizeMultiple,
        max_image_pixels: deps.config.maxImagePixels,
        defaults: {
          size: `${state.pipeline.defaults.width}x${state.pipeline.defaults.height}`,
          num_inference_steps: state.pipeline.defaults.steps,
          guidance_scale: state.pipeline.defaults.guidanceScale,
          ...(state.pipeline.defaults.trueCfgScale === undefined
            ? {}
            : { true_cfg_scale: state.pipeline.defaults.trueCfgScale }),
        },
      }
      : {};
    return c.json({
      object: "list",
      data: [{
        id: deps.config.servedModelName,
        object: "model",
        created,
        owned_by: "denoise",
        root: deps.config.modelRoot,
        ...loaded,
      }],
    });
  });

  app.get("/health", (c) => {
    const state = deps.engine.state;
    if (state.status === "ready") return c.json({ status: "healthy" });
    return c.json({
      status: "unhealthy",
      reason: state.status === "loading"
        ? `Model is loading${state.stage ? `: ${state.stage}` : ""}`
        : `Model failed to load: ${state.reason}`,
    }, 503);
  });

  app.get("/openapi.json", (c) => c.json(spec));
  app.get("/docs", swaggerUI({ url: "/openapi.json", title: "denoise API" }));

  app.notFound(() => {
    throw new ApiError(404, "Not found.", { code: "not_found" });
  });

  app.onError((err, c) => {
    let error: ApiError;
    if (err instanceof ApiError) error = err;
    else if (err instanceof HTTPException && err.status === 400 && /JSON/i.test(err.message)) {
      error = new ApiError(422, "Request body is not valid JSON.", {
        detail: [{ loc: ["body"], msg: "Invalid JSON body", type: "value_error.jsondecode" }],
      });
    } else if (err instanceof HTTPException) error = new ApiError(err.status, err.message);
    else if (
      err instanceof RangeError || err instanceof TypeError && /must be|Invalid/.test(err.message)
    ) {
      error = new ApiError(400, err.message, { code: "invalid_value" });
    } else {
      console.error(`request ${c.res.headers.get("x-request-id") ?? ""} failed:`, err);
      error = new ApiError(500, "Image generation failed due to an internal error.", {
        headers: { "x-should-retry": "false" },
      });
    }
    for (const [k, v] of Object.entries(error.options.headers ?? {})) c.header(k, v);
    return c.json(error.body(), error.status as ContentfulStatusCode);
  });

  return app;
}
