/**
 * What both generation routes share of Hono: the request as their answers see it, and the
 * server-sent event writer they stream with. An error after the stream
 * started becomes an error event (the status line has already gone); a client that left ends it
 * as 499. The status it ended with goes to the request's outcome (`outcome.ts`).
 *
 * @module
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppEnv } from "../app_env.ts";
import { toApiError } from "../error_handler.ts";
import type { Logger } from "../log.ts";
import type { SseEvent } from "./event_channel.ts";
import type { RequestContext } from "./run.ts";

/**
 * Each streamed request's way to say its client left. Deno aborts a request's signal when the
 * client disconnects, but not always once the response stream has been cancelled (seen: a
 * playground Cancel whose generation ran on to a 200); the stream's cancellation says it too.
 */
const leaving = new WeakMap<Context<AppEnv>, AbortController>();

/** The request `c` as a generation's answer sees it. */
export function requestContext(c: Context<AppEnv>, stream: boolean): RequestContext {
  const left = new AbortController();
  leaving.set(c, left);
  return {
    id: c.get("requestId"),
    signal: AbortSignal.any([c.req.raw.signal, left.signal]),
    outcome: c.get("outcome"),
    stream,
  };
}

/** How an endpoint's stream reports an error, and ends. */
export interface StreamShape {
  /** The event carrying an error's documented body. */
  errorEvent(body: Record<string, unknown>): SseEvent;
  /** The last event of a stream that was not abandoned (chat's `data: [DONE]`). */
  end?: SseEvent;
}

/** Sends `events` as a server-sent event stream. */
export function sse(
  c: Context<AppEnv>,
  events: AsyncIterable<SseEvent>,
  shape: StreamShape,
  log: Logger,
): Response {
  const ended = c.get("outcome").streaming();
  const left = leaving.get(c) ?? new AbortController();
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => left.abort());
    let status = 200;
    try {
      for await (const e of events) await stream.writeSSE(e);
    } catch (err) {
      const error = toApiError(err);
      status = error.status;
      if (status >= 500) {
        log.error(`request failed: ${(err as Error)?.stack ?? err}`, { id: c.get("requestId") });
      }
      if (status !== 499) await stream.writeSSE(shape.errorEvent(error.body()));
    }
    if (shape.end && status !== 499) await stream.writeSSE(shape.end);
    ended(c.req.raw.signal.aborted || left.signal.aborted ? 499 : status);
  });
}
