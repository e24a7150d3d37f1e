/**
 * `bodySizeLimit()`: a body over {@linkcode MAX_BODY_BYTES} (on the edits route
 * {@linkcode MAX_EDIT_BODY_BYTES}) is refused with 413.
 * `requestLimits()`: bounds what clients can hold open on the generation routes. At most
 * `maxConcurrent` requests are received and handled at once (more get 429 `server_busy`), and a
 * body must arrive within `bodyTimeoutMs` (else 408), so half-sent requests cannot pile up.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { AppEnv } from "../app_env.ts";
import { MAX_EDIT_BODY_BYTES } from "../../compute/mod.ts";
import { EDITS_PATH } from "../api/edits/route.ts";
import { ApiError } from "../errors.ts";

/** Maximum request body size (documented in openapi.yaml). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Hono's body limit of `maxSize` bytes, with the documented 413 `request_too_large`. */
function limit(maxSize: number): MiddlewareHandler<AppEnv> {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new ApiError(413, `Request body exceeds ${maxSize} bytes.`, {
        code: "request_too_large",
      });
    },
  });
}

/**
 * The body limit: {@linkcode MAX_BODY_BYTES}, or {@linkcode MAX_EDIT_BODY_BYTES} on the edits
 * route, whose body carries images.
 */
export function bodySizeLimit(): MiddlewareHandler<AppEnv> {
  const fields = limit(MAX_BODY_BYTES), images = limit(MAX_EDIT_BODY_BYTES);
  return (c, next) => (c.req.path === EDITS_PATH ? images : fields)(c, next);
}

/** The limits middleware; use it after the body-size limit. */
export function requestLimits(
  { maxConcurrent, bodyTimeoutMs }: { maxConcurrent: number; bodyTimeoutMs: number },
): MiddlewareHandler<AppEnv> {
  let inFlight = 0;
  return async (c, next) => {
    if (c.req.method !== "POST") return await next();
    if (inFlight >= maxConcurrent) {
      throw new ApiError(429, `The server is receiving ${maxConcurrent} requests; retry shortly.`, {
        type: "rate_limit_error",
        code: "server_busy",
        headers: { "retry-after": "1" },
      });
    }
    inFlight++;
    try {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ApiError(
                408,
                `The request body did not arrive within ${bodyTimeoutMs / 1000} s.`,
                {
                  code: "body_timeout",
                },
              ),
            ),
          bodyTimeoutMs,
        );
      });
      try {
        // Read (and cache, for the validator) the whole body now, under the deadline.
        await Promise.race([c.req.arrayBuffer(), timeout]);
      } finally {
        clearTimeout(timer);
      }
      await next();
    } finally {
      inFlight--;
    }
  };
}
