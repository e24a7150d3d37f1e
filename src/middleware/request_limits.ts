/**
 * `requestLimits()`: bounds what clients can hold open on the generation routes. At most
 * `maxConcurrent` requests are received and handled at once (more get 429 `server_busy`), and a
 * body must arrive within `bodyTimeoutMs` (else 408), so half-sent requests cannot pile up.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app_env.ts";
import { ApiError } from "../errors.ts";

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
