/**
 * `bodyErrors()`: a request body whose framing breaks while it is read (a bad chunk size, a
 * connection that ends before the declared length) fails its reader with a 400
 * `malformed_request` instead of Deno's `BadResource`, which became a 500 and an ERROR line
 * although the client sent it broken. (When the broken bytes arrive with the head, Deno's parser
 * drops the connection before any handler runs: no answer and no log line.)
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app_env.ts";
import { ApiError } from "../errors.ts";

/** The middleware; use it before anything reads the body. */
export function bodyErrors(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const body = c.req.raw.body;
    if (body) {
      const reader = body.getReader();
      const mapped = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          } catch {
            controller.error(
              new ApiError(
                400,
                "The request body could not be read: its chunked framing is broken or it ended early.",
                { code: "malformed_request" },
              ),
            );
          }
        },
        cancel: (reason) => reader.cancel(reason),
      });
      c.req.raw = new Request(c.req.raw, { body: mapped });
    }
    await next();
  };
}
