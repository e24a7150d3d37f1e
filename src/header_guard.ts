/**
 * The listening socket in front of `Deno.serve`, which has no header-read timeout
 * (denoland/deno#3515): a client that never finishes its request head would hold its connection
 * forever, and a few thousand such clients exhaust the server's sockets (slowloris).
 *
 * The guard accepts each TCP connection and reads the request head itself, at most
 * {@linkcode MAX_HEAD_BYTES}, within `headerTimeoutS`; otherwise it answers 408 or 431 in the
 * documented error shape and closes. A complete head is checked (`checkHead`: malformed or
 * ambiguously framed requests get 400, too many header fields 431), then handed, with
 * `Connection: close` put in, to `Deno.serve` listening on a private Unix socket, and the two
 * sockets are joined until either side closes. Every refusal carries an `x-request-id` (the
 * client's, when valid) and is logged as the app logs requests. `Connection: close` makes every
 * connection carry one request, so every request's head is timed; clients reconnect for the next one, which costs nothing next to a generation.
 * The body's deadline stays with the app (`--body-timeout`).
 *
 * @module
 */
import type { Logger } from "./log.ts";
import { requestIdFrom } from "./middleware/request_log.ts";
import { checkHead, requestLine } from "./request_head.ts";

/** The largest request head (request line and headers) the guard reads. */
export const MAX_HEAD_BYTES = 64 * 1024;

/** A running server, guarded or not. */
export interface GuardedServer {
  /** Stops accepting connections, then waits for those in flight (`Deno.HttpServer.shutdown`). */
  shutdown(): Promise<void>;
}

/** Where and how to listen. */
export interface GuardOptions {
  hostname: string;
  port: number;
  /** Seconds a client may take to send its request head; 0: no guard (plain `Deno.serve`). */
  headerTimeoutS: number;
  onListen(addr: { hostname: string; port: number }): void;
  /** Told why the guard is off when its private socket cannot be made (no writable temp dir). */
  onUnguarded?(reason: string): void;
  /** Where the guard's refusals (400, 408, 431) are logged. */
  log?: Logger;
}

/**
 * Serves `handler` on `hostname:port`, behind the guard when `headerTimeoutS` > 0. Throws
 * `Deno.errors.AddrInUse` (and the like) as `Deno.serve` does.
 */
export function serveGuarded(
  handler: Deno.ServeHandler,
  { hostname, port, headerTimeoutS, onListen, onUnguarded, log }: GuardOptions,
): GuardedServer {
  let dir: string | undefined;
  try {
    if (headerTimeoutS > 0) dir = Deno.makeTempDirSync({ prefix: "denoise-http-" });
  } catch (e) {
    onUnguarded?.(`no folder for its socket: ${(e as Error).message}`);
  }
  if (!dir) return Deno.serve({ hostname, port, onListen }, handler);
  const listener = Deno.listen({ hostname, port });
  const path = `${dir}/http.sock`;
  const server = Deno.serve({ path, onListen: () => {} }, handler);
  onListen(listener.addr);
  const accepting = (async () => {
    try {
      for await (const conn of listener) void guard(conn, path, headerTimeoutS * 1000, log);
    } catch {
      // The listener was closed: shutting down.
    }
  })();
  return {
    async shutdown() {
      listener.close();
      await accepting;
      await server.shutdown();
      await Deno.remove(dir!, { recursive: true }).catch(() => {});
    },
  };
}

type Head =
  | { head: Uint8Array; rest: Uint8Array }
  | { failed: "closed" | "timeout" | "too large"; partial: Uint8Array };

/**
 * Reads one request head from `conn`, up to its blank line (or up to a bare LF, which
 * `checkHead` refuses, rather than waiting for a CRLF that never comes), within `timeoutMs`.
 */
async function readHead(conn: Deno.Conn, timeoutMs: number): Promise<Head> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const buffer = new Uint8Array(MAX_HEAD_BYTES);
  let length = 0;
  try {
    while (length < buffer.length) {
      const reading = conn.read(buffer.subarray(length));
      // After a timeout the read is abandoned; the socket's closing then rejects it.
      reading.catch(() => {});
      const n = await Promise.race([reading, expired]);
      if (n === "timeout" || n === null) {
        return { failed: n ?? "closed", partial: buffer.subarray(0, length) };
      }
      const searchFrom = Math.max(0, length - 3);
      length += n;
      const end = indexOfHeadEnd(buffer.subarray(0, length), searchFrom);
      if (end >= 0) {
        return { head: buffer.slice(0, end), rest: buffer.slice(end, length) };
      }
    }
    return { failed: "too large", partial: buffer };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The offset just past the first `\r\n\r\n`, or the first LF not preceded by CR, whose LF is
 * at or after `from`; −1 when there is none yet.
 */
function indexOfHeadEnd(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(10, from); i >= 0; i = bytes.indexOf(10, i + 1)) {
    if (i === 0 || bytes[i - 1] !== 13) return i + 1;
    if (i >= 3 && bytes[i - 2] === 10 && bytes[i - 3] === 13) return i + 1;
  }
  return -1;
}

/** `head` with its `Connection` headers replaced by `Connection: close`. */
function closingHead(head: Uint8Array): Uint8Array {
  // Bytes as a binary string (one char per byte), so that header values pass through unchanged.
  const text = Array.from(head, (b) => String.fromCharCode(b)).join("");
  const lines = text.split("\r\n").filter((line) => !/^connection\s*:/i.test(line));
  // The head ends with "\r\n\r\n": the last two entries are empty.
  lines.splice(lines.length - 2, 0, "Connection: close");
  return Uint8Array.from(lines.join("\r\n"), (c) => c.charCodeAt(0));
}

/** The answer to a head that did not arrive whole: none when the client went away. */
function readFailure(
  read: Extract<Head, { failed: unknown }>,
  timeoutMs: number,
): Refusal | undefined {
  if (read.failed === "timeout") {
    return {
      status: 408,
      code: "header_timeout",
      message: `The request head did not arrive within ${timeoutMs / 1000} s.`,
      ...requestLine(read.partial),
    };
  }
  if (read.failed === "too large") {
    return {
      status: 431,
      code: "header_too_large",
      message: `The request head is larger than ${MAX_HEAD_BYTES} bytes.`,
      ...requestLine(read.partial),
    };
  }
  return undefined;
}

/** One client connection: its head timed and checked, then joined to the app until either side closes. */
async function guard(
  conn: Deno.Conn,
  path: string,
  timeoutMs: number,
  log: Logger | undefined,
): Promise<void> {
  const started = performance.now();
  let app: Deno.Conn | undefined;
  const answer = async (refusal: Refusal) => {
    const id = requestIdFrom(refusal.requestId);
    // As the app's access log: method, path as sent, status; `-` for what never arrived.
    log?.info(
      `${refusal.method ?? "-"} ${
        refusal.target?.replace(/[?#][^]*$/, "") ?? "-"
      } ${refusal.status}`,
      { id, ms: Math.round(performance.now() - started), code: refusal.code },
    );
    await refuse(conn, refusal, id);
  };
  try {
    const read = await readHead(conn, timeoutMs);
    if ("failed" in read) {
      const refusal = readFailure(read, timeoutMs);
      if (refusal) await answer(refusal);
      return;
    }
    const head = checkHead(read.head);
    if (!head.ok) return await answer(head);
    app = await Deno.connect({ transport: "unix", path });
    await writeAll(app, closingHead(read.head));
    await writeAll(app, read.rest);
    // Whichever side finishes first (the app after its response, or a client that went away,
    // which the app then sees as a disconnect) ends both.
    // The other pump fails when both sockets close: expected, so caught.
    await Promise.race([pump(conn, app).catch(() => {}), pump(app, conn).catch(() => {})]);
  } catch {
    // A reset or closed socket: nothing to answer.
  } finally {
    for (const c of [conn, app]) {
      try {
        c?.close();
      } catch {
        // Already closed.
      }
    }
  }
}

async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await from.read(buffer);
    if (n === null) return;
    await writeAll(to, buffer.subarray(0, n));
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Why the guard answers a connection itself, and what it read of the request. */
interface Refusal {
  status: 400 | 408 | 431;
  code: string;
  message: string;
  method?: string;
  target?: string;
  requestId?: string;
}

const REASONS = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
} as const;

/** Answers in the documented error shape (vLLM-Omni's `detail`, OpenAI's `error`) and closes. */
async function refuse(
  conn: Deno.Conn,
  { status, code, message }: Refusal,
  requestId: string,
): Promise<void> {
  const body = JSON.stringify({
    detail: message,
    error: { message, type: "invalid_request_error", param: null, code },
  });
  const length = new TextEncoder().encode(body).length;
  const response = `HTTP/1.1 ${status} ${REASONS[status]}\r\ncontent-type: application/json\r\n` +
    `content-length: ${length}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`;
  await writeAll(conn, new TextEncoder().encode(response));
  // Closing with unread bytes would reset the connection, and the client could lose the answer
  // before reading it: finish our side, then discard what the client still sends, for at most 1 s.
  await conn.closeWrite();
  const discard = new Uint8Array(64 * 1024);
  const until = performance.now() + 1000;
  while (performance.now() < until) {
    const reading = conn.read(discard);
    reading.catch(() => {});
    const n = await Promise.race([
      reading,
      new Promise<null>((r) => setTimeout(() => r(null), 100)),
    ]);
    if (n === null) break;
  }
}
