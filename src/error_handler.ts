/**
 * The one mapping from anything thrown while serving to an {@linkcode ApiError}, by class: errors
 * the API raises keep their status, the engine's refusals their documented 503s and 429,
 * compute's `InvalidInputError` is a 400, a cancellation a 499,
 * NaN or infinite model output a 500 that says so (`non_finite_output`, not to be retried),
 * malformed JSON the documented 422, a non-JSON body 415, and everything else a 500 without
 * internals.
 *
 * @module
 */
import type { ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "./app_env.ts";
import { CancelledError, InvalidInputError, NonFiniteOutputError } from "../compute/mod.ts";
import { EngineNotReady, ModelLoadFailed, QueueFull, ShuttingDown } from "./engine/errors.ts";
import { ApiError, ENGINE_NOT_READY, invalidJson } from "./errors.ts";
import type { Logger } from "./log.ts";

/** The documented answer to one of the engine's refusals; undefined for other errors. */
function engineError(err: unknown): ApiError | undefined {
  if (err instanceof EngineNotReady) {
    return new ApiError(503, ENGINE_NOT_READY, {
      type: "service_unavailable",
      code: "engine_not_ready",
      headers: { "retry-after": "5" },
    });
  }
  if (err instanceof ModelLoadFailed) {
    // Permanent until restarted: no retry-after, so clients do not retry in vain.
    return new ApiError(503, ENGINE_NOT_READY, {
      type: "service_unavailable",
      code: "model_load_failed",
      headers: { "x-should-retry": "false" },
    });
  }
  if (err instanceof QueueFull) {
    return new ApiError(429, err.message, {
      type: "rate_limit_error",
      code: "queue_full",
      headers: { "retry-after": "2" },
    });
  }
  if (err instanceof ShuttingDown) {
    return new ApiError(503, err.message, {
      type: "service_unavailable",
      code: "shutting_down",
      headers: { "retry-after": "5" },
    });
  }
  return undefined;
}

/** `err` as the error the client is told about. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const fromEngine = engineError(err);
  if (fromEngine) return fromEngine;
  if (err instanceof CancelledError) {
    return new ApiError(499, "Client closed request.", { code: "client_closed_request" });
  }
  if (err instanceof InvalidInputError) {
    return new ApiError(400, err.message, { code: "invalid_value", param: err.param });
  }
  if (err instanceof NonFiniteOutputError) {
    return new ApiError(500, err.message, {
      code: "non_finite_output",
      headers: { "x-should-retry": "false" },
    });
  }
  if (err instanceof HTTPException) {
    switch (err.status) {
      case 400: // Hono's body parser: the body is not JSON
        return invalidJson();
      case 415:
        return new ApiError(
          415,
          "The request body must be JSON, sent with Content-Type: application/json.",
          { code: "unsupported_media_type" },
        );
      default:
        return new ApiError(err.status, err.message);
    }
  }
  return new ApiError(500, "Image generation failed due to an internal error.", {
    headers: { "x-should-retry": "false" },
  });
}

/**
 * The app's error handler: the documented body, status and headers of {@linkcode toApiError};
 * an unexpected 5xx is logged with its stack.
 */
export function onError(log: Logger): ErrorHandler<AppEnv> {
  return (err, c) => {
    // A middleware's own answer (bearerAuth's 401 with WWW-Authenticate).
    if (err instanceof HTTPException && err.res) return err.getResponse();
    const error = toApiError(err);
    if (error.status >= 500 && !(err instanceof ApiError)) {
      log.error(`request failed: ${(err as Error)?.stack ?? err}`, { id: c.get("requestId") });
    }
    for (const [k, v] of Object.entries(error.options.headers ?? {})) c.header(k, v);
    return c.json(error.body(), error.status as ContentfulStatusCode);
  };
}

/**
 * The 404 of an unknown path. Answered, not thrown: Hono calls this handler outside the
 * middleware chain's error handling, so a throw would skip the request log (no line, no
 * x-request-id) on paths where no other middleware runs.
 */
export const notFound: NotFoundHandler<AppEnv> = (c) =>
  c.json(new ApiError(404, "Not found.", { code: "not_found" }).body(), 404);
