/**
 * The one mapping from anything thrown while serving to an {@linkcode ApiError}: errors the API
 * raises keep their status, compute-side input errors are 400s, malformed JSON is the
 * documented 422, and everything else is a 500 without internals.
 *
 * @module
 */
import { HTTPException } from "hono/http-exception";
import { CancelledError } from "../compute/mod.ts";
import { ApiError } from "./errors.ts";

/** `err` as the error the client is told about. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof CancelledError) {
    return new ApiError(499, "Client closed request.", { code: "client_closed_request" });
  }
  if (err instanceof HTTPException && err.status === 400 && /JSON/i.test(err.message)) {
    return new ApiError(422, "Request body is not valid JSON.", {
      detail: [{ loc: ["body"], msg: "Invalid JSON body", type: "value_error.jsondecode" }],
    });
  }
  if (err instanceof HTTPException) return new ApiError(err.status, err.message);
  if (
    err instanceof RangeError || err instanceof TypeError && /must be|Invalid/.test(err.message)
  ) {
    return new ApiError(400, err.message, { code: "invalid_value" });
  }
  return new ApiError(500, "Image generation failed due to an internal error.", {
    headers: { "x-should-retry": "false" },
  });
}
