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
import { HTTPException } from "hono/http-exception";
import { CancelledError, InvalidInputError, NonFiniteOutputError } from "../compute/mod.ts";
import { EngineNotReady, ModelLoadFailed, QueueFull, ShuttingDown } from "./engine/errors.ts";
import { ApiError, ENGINE_NOT_READY } from "./errors.ts";

/** `err` as the error the client is told about. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
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
        return new ApiError(422, "Request body is not valid JSON.", {
          detail: [{ loc: ["body"], msg: "Invalid JSON body", type: "value_error.jsondecode" }],
        });
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
