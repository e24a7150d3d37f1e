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

/** The request `c` as a generation's answer sees it. */
export function requestContext(c: Context<AppEnv>, stream: boolean): RequestContext {
  return { id: c.get("requestId"), signal: c.req.raw.signal, outcome: c.get("outcome"), stream };
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
  return streamSSE(c, async (stream) => {
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
    ended(c.req.raw.signal.aborted ? 499 : status);
  });
}
