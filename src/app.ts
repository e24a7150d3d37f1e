/**
 * `buildApp(deps)`: the Hono application, composed from middleware (request id and access log →
 * CORS → draining → auth → body read errors → body size → concurrency and body deadline) and one module per group of routes; `onError` is the single
 * place errors become the documented body.
 *
 * @module
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "./app_env.ts";
import type { Engine } from "./engine/engine.ts";
import { toApiError } from "./error_handler.ts";
import { ApiError, validationError } from "./errors.ts";
import type { ImageStore } from "./image_store.ts";
import { createLogger, type Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { bodyErrors } from "./middleware/body_errors.ts";
import { requestLimits } from "./middleware/request_limits.ts";
import { requestLog } from "./middleware/request_log.ts";
import { docsRoutes } from "./routes/docs.ts";
import { generationRoutes } from "./routes/generation.ts";
import { modelRoutes } from "./routes/models.ts";
import { opsRoutes } from "./routes/ops.ts";
import { playgroundRoutes } from "./routes/playground.ts";
import type { ServingConfig } from "./serving/generation.ts";

/** Maximum request body size (documented in openapi.yaml). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Whether the server still admits work (false once a shutdown began). */
export interface Lifecycle {
  draining: boolean;
}

/** Everything the app needs from outside. */
export interface AppDeps {
  engine: Engine;
  store: ImageStore;
  metrics: Metrics;
  lifecycle: Lifecycle;
  config: ServingConfig & {
    apiKey?: string;
    /** Serve /metrics without the key. */
    publicMetrics?: boolean;
    /** Base of image URLs (`--public-url`, else the listening address). */
    publicUrl: string;
    /** The model's hub id or folder name (no path), shown as `root` in /v1/models. */
    modelRoot: string;
    /** Most generation requests received and handled at once. */
    maxConcurrentRequests?: number;
    /** How long a request body may take to arrive, in seconds. */
    bodyTimeoutS?: number;
    cors?: CorsConfig;
  };
  log?: Logger;
}

/** Cross-origin access (vLLM's `--allowed-origins`, …); off when absent. */
export interface CorsConfig {
  origins: string[];
  methods: string[];
  headers: string[];
  credentials: boolean;
}

/** Builds the application. */
export function buildApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const log = deps.log ?? createLogger();
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error);
    },
  });

  app.use(requestLog(log, (method, route, status, generated) => {
    deps.metrics.httpRequest(method, route, status);
    if (generated?.result.timings.encodeMs !== undefined) {
      deps.metrics.encoded(generated.result.timings.encodeMs);
    }
  }));
  const corsConfig = deps.config.cors;
  if (corsConfig) {
    // Before auth: a browser's preflight carries no credentials.
    app.use(cors({
      origin: corsConfig.origins.includes("*") ? "*" : corsConfig.origins,
      allowMethods: corsConfig.methods.includes("*")
        ? ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        : corsConfig.methods,
      allowHeaders: corsConfig.headers.includes("*") ? [] : corsConfig.headers,
      credentials: corsConfig.credentials,
      exposeHeaders: ["x-request-id", "retry-after"],
    }));
  }
  app.use("/v1/*", async (_c, next) => {
    if (deps.lifecycle.draining) {
      throw new ApiError(503, "The server is shutting down; retry on another replica.", {
        type: "service_unavailable",
        code: "shutting_down",
        headers: { "retry-after": "5" },
      });
    }
    await next();
  });
  const apiKey = deps.config.apiKey;
  if (apiKey) {
    // Hono's bearerAuth: constant-time comparison, case-insensitive scheme, WWW-Authenticate.
    const unauthorized = () =>
      new Response(
        JSON.stringify(
          new ApiError(401, "Incorrect API key provided.", { code: "invalid_api_key" }).body(),
        ),
        { status: 401, headers: { "content-type": "application/json" } },
      );
    const auth = bearerAuth({
      token: apiKey,
      noAuthenticationHeader: { message: unauthorized },
      invalidAuthenticationHeader: { message: unauthorized },
      invalidToken: { message: unauthorized },
    });
    app.use("/v1/*", auth);
    if (!deps.config.publicMetrics) app.use("/metrics", auth);
  }
  app.use("/v1/*", bodyErrors());
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
  app.use(
    "/v1/*",
    requestLimits({
      maxConcurrent: deps.config.maxConcurrentRequests ?? 256,
      bodyTimeoutMs: (deps.config.bodyTimeoutS ?? 30) * 1000,
    }),
  );

  generationRoutes(app, { ...deps, log });
  modelRoutes(app, deps);
  opsRoutes(app, deps);
  docsRoutes(app);
  playgroundRoutes(app);

  // Answered, not thrown: Hono calls this handler outside the middleware chain's error
  // handling, so a throw would skip the request log (no line, no x-request-id) on paths where
  // no other middleware runs.
  app.notFound((c) => c.json(new ApiError(404, "Not found.", { code: "not_found" }).body(), 404));

  app.onError((err, c) => {
    // A middleware's own answer (bearerAuth's 401 with WWW-Authenticate).
    if (err instanceof HTTPException && err.res) return err.getResponse();
    const error = toApiError(err);
    if (error.status >= 500 && !(err instanceof ApiError)) {
      log.error(`request failed: ${(err as Error)?.stack ?? err}`, { id: c.get("requestId") });
    }
    for (const [k, v] of Object.entries(error.options.headers ?? {})) c.header(k, v);
    return c.json(error.body(), error.status as ContentfulStatusCode);
  });

  return app;
}
