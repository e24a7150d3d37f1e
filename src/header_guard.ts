/**
 * The listening socket in front of `Deno.serve`, which has no header-read timeout
 * (denoland/deno#3515): a client that never finishes its request head would hold its connection
 * forever, and a few thousand such clients exhaust the server's sockets (slowloris).
 *
 * The guard accepts each TCP connection and reads the request head itself, at most
 * {@linkcode MAX_HEAD_BYTES}, within `headerTimeoutS`; otherwise it answers 408 or 431 in the
 * documented error shape and closes. A complete head is handed, with `Connection: close` put in,
 * to `Deno.serve` listening on a private Unix socket, and the two sockets are joined until either
 * side closes. `Connection: close` makes every connection carry one request, so every request's
 * head is timed; clients reconnect for the next one, which costs nothing next to a generation.
 * The body's deadline stays with the app (`--body-timeout`).
 *
 * @module
 */

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
}

/**
 * Serves `handler` on `hostname:port`, behind the guard when `headerTimeoutS` > 0. Throws
 * `Deno.errors.AddrInUse` (and the like) as `Deno.serve` does.
 */
export function serveGuarded(
  handler: Deno.ServeHandler,
  { hostname, port, headerTimeoutS, onListen, onUnguarded }: GuardOptions,
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
      for await (const conn of listener) void guard(conn, path, headerTimeoutS * 1000);
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

type Head = { head: Uint8Array; rest: Uint8Array } | "closed" | "timeout" | "too large";

/** Reads one request head from `conn`, up to its blank line, within `timeoutMs`. */
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
      if (n === "timeout") return n;
      if (n === null) return "closed";
      const searchFrom = Math.max(0, length - 3);
      length += n;
      const end = indexOfBlankLine(buffer.subarray(0, length), searchFrom);
      if (end >= 0) {
        return { head: buffer.slice(0, end), rest: buffer.slice(end, length) };
      }
    }
    return "too large";
  } finally {
    clearTimeout(timer);
  }
}

/** The offset just past the first `\r\n\r\n` at or after `from`, or −1. */
function indexOfBlankLine(bytes: Uint8Array, from: number): number {
  for (
    let i = bytes.indexOf(13, from);
    i >= 0 && i + 3 < bytes.length;
    i = bytes.indexOf(13, i + 1)
  ) {
    if (bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i + 4;
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

/** One client connection: its head timed, then joined to the app until either side closes. */
async function guard(conn: Deno.Conn, path: string, timeoutMs: number): Promise<void> {
  let app: Deno.Conn | undefined;
  try {
    const read = await readHead(conn, timeoutMs);
    if (read === "timeout") {
      await refuse(conn, 408, `The request head did not arrive within ${timeoutMs / 1000} s.`, {
        code: "header_timeout",
      });
      return;
    }
    if (read === "too large") {
      await refuse(conn, 431, `The request head is larger than ${MAX_HEAD_BYTES} bytes.`, {
        code: "header_too_large",
      });
      return;
    }
    if (read === "closed") return;
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

/** Answers in the documented error shape (vLLM-Omni's `detail`, OpenAI's `error`) and closes. */
async function refuse(
  conn: Deno.Conn,
  status: 408 | 431,
  message: string,
  { code }: { code: string },
): Promise<void> {
  const body = JSON.stringify({
    detail: message,
    error: { message, type: "invalid_request_error", param: null, code },
  });
  const reason = status === 408 ? "Request Timeout" : "Request Header Fields Too Large";
  const length = new TextEncoder().encode(body).length;
  const response = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
    `content-length: ${length}\r\nconnection: close\r\n\r\n${body}`;
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
