/**
 * `requestLog()`: gives every request an id (the client's `x-request-id`, or a new one), echoes
 * it, and logs one line per request with its status, time and generation stages. A streamed
 * response is logged when its stream ends, with the status it ended with (499 when the client
 * left). The path is logged as the client sent it, percent-encoded: a `%0a` stays three
 * characters, so it cannot start a forged line (the logger escapes what else arrives raw).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app_env.ts";
import type { LogFields, Logger } from "../log.ts";
import { type Generated, Outcome } from "../api/outcome.ts";

/** Longest client-sent `x-request-id` echoed; a longer one is replaced by a fresh id. */
export const MAX_REQUEST_ID_LENGTH = 128;

/**
 * The id of a request: the client's `x-request-id` when it is at most
 * {@linkcode MAX_REQUEST_ID_LENGTH} printable ASCII characters, else a fresh UUID.
 */
export function requestIdFrom(given: string | null | undefined): string {
  return given && given.length <= MAX_REQUEST_ID_LENGTH && /^[\x21-\x7e]+$/.test(given)
    ? given
    : crypto.randomUUID();
}

/** The path of `url` as received (still percent-encoded), without query or fragment. */
function sentPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  return start < 0 ? "/" : url.slice(start).replace(/[?#][^]*$/, "");
}

function stages(g: Generated | undefined): LogFields {
  const t = g?.result.timings;
  if (!g || !t) return {};
  return {
    images: g.images.length,
    size: `${g.result.width}x${g.result.height}`,
    steps: g.result.steps,
    seed: String(g.seed),
    text_ms: Math.round(t.textEncodeMs),
    denoise_ms: Math.round(t.stepMs.reduce((a, b) => a + b, 0)),
    decode_ms: Math.round(t.decodeMs),
    encode_ms: Math.round(t.encodeMs ?? 0),
  };
}

/** The request id and access log middleware. */
export function requestLog(
  log: Logger,
  onFinished: (method: string, route: string, status: number, generated?: Generated) => void,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    const id = requestIdFrom(c.req.header("x-request-id"));
    const outcome = new Outcome();
    c.set("requestId", id);
    c.set("outcome", outcome);
    await next();
    c.header("x-request-id", id);
    const line = (status: number) => {
      onFinished(c.req.method, c.req.routePath, status, outcome.generated);
      log.info(`${c.req.method} ${sentPath(c.req.url)} ${status}`, {
        id,
        ms: Math.round(performance.now() - started),
        ...stages(outcome.generated),
      });
    };
    const status = outcome.status(c.res.status);
    if (typeof status === "number") line(status);
    else void status.then(line);
  };
}
