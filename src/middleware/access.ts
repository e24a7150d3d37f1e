/**
 * Who may reach the API: cross-origin access (CORS, before auth: a browser's preflight carries no
 * credentials), no new work once a shutdown began, and the API key (`--api-key`).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { cors } from "hono/cors";
import type { AppEnv } from "../app_env.ts";
import type { CorsConfig, Live } from "../deps.ts";
import { ApiError } from "../errors.ts";

/** CORS as configured; a `*` in a list allows everything. */
export function corsAccess(config: CorsConfig): MiddlewareHandler<AppEnv> {
  return cors({
    origin: config.origins.includes("*") ? "*" : [...config.origins],
    allowMethods: config.methods.includes("*")
      ? ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
      : [...config.methods],
    allowHeaders: config.headers.includes("*") ? [] : [...config.headers],
    credentials: config.credentials,
    exposeHeaders: ["x-request-id", "retry-after"],
  });
}

/** 503 `shutting_down` with `retry-after` once the server drains. */
export function refuseWhileDraining(live: Pick<Live, "draining">): MiddlewareHandler<AppEnv> {
  return async (_c, next) => {
    if (live.draining) {
      throw new ApiError(503, "The server is shutting down; retry on another replica.", {
        type: "service_unavailable",
        code: "shutting_down",
        headers: { "retry-after": "5" },
      });
    }
    await next();
  };
}

/**
 * The API key, with Hono's bearerAuth (constant-time comparison, case-insensitive scheme,
 * WWW-Authenticate); a refusal is the documented 401 `invalid_api_key`.
 */
export function apiKeyAuth(apiKey: string): MiddlewareHandler<AppEnv> {
  const unauthorized = () =>
    new Response(
      JSON.stringify(
        new ApiError(401, "Incorrect API key provided.", { code: "invalid_api_key" }).body(),
      ),
      { status: 401, headers: { "content-type": "application/json" } },
    );
  return bearerAuth({
    token: apiKey,
    noAuthenticationHeader: { message: unauthorized },
    invalidAuthenticationHeader: { message: unauthorized },
    invalidToken: { message: unauthorized },
  });
}
