/**
 * Operations routes: `/health` (readiness), `/ping` (liveness), `/version`, `/metrics`.
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../app_env.ts";
import type { AppDeps } from "../deps.ts";
import { withoutPaths } from "../errors.ts";
import { VERSION } from "../version.ts";

/** Adds the operations routes. */
export function opsRoutes(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  app.get("/health", (c) => {
    const state = deps.engine.state;
    if (deps.live.draining) {
      return c.json({ status: "unhealthy", reason: "The server is shutting down" }, 503);
    }
    if (state.status === "ready") return c.json({ status: "healthy" });
    return c.json({
      status: "unhealthy",
      reason: state.status === "loading"
        ? `Model is loading${state.stage ? `: ${state.stage}` : ""}`
        : `Model failed to load: ${withoutPaths(state.reason)}`,
    }, 503);
  });
  // vLLM answers /ping like /health; ours stays 200 while the model loads or downloads, so a
  // liveness probe never restarts a server that is only busy.
  app.get("/ping", (c) => c.body(null, 200));
  app.get("/version", (c) => c.json({ version: VERSION }));
  app.get("/metrics", async (c) =>
    c.body(await deps.metrics.registry.metrics(), 200, {
      "content-type": deps.metrics.registry.contentType,
    }));
}
