/**
 * `buildApp(config, engine)`: the Hono application, composed from middleware (request id and
 * access log → CORS → draining → auth → body read errors → body size → concurrency and body
 * deadline), one module per endpoint (`api/`) and per group of other routes (`routes/`);
 * `onError` is the single place errors become the documented body. It takes any
 * {@linkcode EngineLike}, so tests build it in-process with a fake engine.
 *
 * @module
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { chatRoute } from "./api/chat/route.ts";
import { editsRoute } from "./api/edits/route.ts";
import { imagesRoute } from "./api/images/route.ts";
import type { AppEnv } from "./app_env.ts";
import type { AppConfig, AppDeps, AppServices, EngineLike } from "./deps.ts";
import { notFound, onError } from "./error_handler.ts";
import { validationError } from "./errors.ts";
import { MemoryImageStore } from "./image_store.ts";
import { createLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { apiKeyAuth, corsAccess, refuseWhileDraining } from "./middleware/access.ts";
import { bodyErrors } from "./middleware/body_errors.ts";
import { bodySizeLimit, requestLimits } from "./middleware/request_limits.ts";
import { requestLog } from "./middleware/request_log.ts";
import { docsRoutes } from "./routes/docs.ts";
import { modelRoutes } from "./routes/models.ts";
import { opsRoutes } from "./routes/ops.ts";
import { playgroundRoutes } from "./routes/playground.ts";

/** The services a caller does not give: an in-memory image store, fresh metrics, a live
 * state that never drains, the default logger. */
function defaults(config: AppConfig, engine: EngineLike): AppServices {
  return {
    store: new MemoryImageStore(),
    metrics: new Metrics(
      config.servedModelName,
      () => ({ running: engine.running, waiting: engine.waiting }),
    ),
    live: { draining: false, listenUrl: "" },
    log: createLogger(),
  };
}

/** Builds the application. */
export function buildApp(
  config: Readonly<AppConfig>,
  engine: EngineLike,
  services: Partial<AppServices> = {},
): OpenAPIHono<AppEnv> {
  const deps: AppDeps = { ...defaults(config, engine), ...services, config, engine };
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error);
    },
  });

  app.use(requestLog(deps.log, (method, route, status, generated) => {
    deps.metrics.httpRequest(method, route, status);
    if (generated?.result.timings.encodeMs !== undefined) {
      deps.metrics.encoded(generated.result.timings.encodeMs);
    }
  }));
  if (config.cors) app.use(corsAccess(config.cors));
  app.use("/v1/*", refuseWhileDraining(deps.live));
  if (config.apiKey) {
    const auth = apiKeyAuth(config.apiKey);
    app.use("/v1/*", auth);
    if (!config.publicMetrics) app.use("/metrics", auth);
  }
  app.use("/v1/*", bodyErrors());
  app.use("/v1/*", bodySizeLimit());
  app.use(
    "/v1/*",
    requestLimits({
      maxConcurrent: config.maxConcurrentRequests ?? 256,
      bodyTimeoutMs: (config.bodyTimeoutS ?? 30) * 1000,
    }),
  );

  imagesRoute(app, deps);
  editsRoute(app, deps);
  chatRoute(app, deps);
  modelRoutes(app, deps);
  opsRoutes(app, deps);
  docsRoutes(app);
  playgroundRoutes(app);

  app.notFound(notFound);
  app.onError(onError(deps.log));
  return app;
}
