/**
 * Malformed and ambiguously framed HTTP/1.1 requests, sent as raw bytes over TCP (`fetch` cannot
 * send them): conflicting, negative or non-numeric `Content-Length`, `Content-Length` with
 * `Transfer-Encoding`, transfer codings other than `chunked`, request targets that are not a
 * path (`*`, authority form), HTTP versions other than 1.0/1.1, broken header lines, control
 * characters, a Host that is not a host, bare line ends, too many header fields. A server that
 * keeps the contract answers each with 400 (431 for too many fields) in the documented error
 * shape, with an `x-request-id`.
 *
 * @module
 */

/** A request to malform: its method, path and the server's host. */
export interface RawTarget {
  method: string;
  path: string;
  host: string;
}

/** One malformed request: how to build it from a target, and the status the contract gives it. */
export interface FramingCase {
  name: string;
  status: 400 | 431;
  build(t: RawTarget): string;
}

const body = '{"prompt":"x"}';
const line = (t: RawTarget, version = "HTTP/1.1") => `${t.method} ${t.path} ${version}\r\n`;
/** The usual headers after the request line (`Connection: close`: one request, then EOF). */
const common = (t: RawTarget) =>
  `Host: ${t.host}\r\nConnection: close\r\nContent-Type: application/json\r\n`;
const withHeaders = (headers: string, payload = "") => (t: RawTarget) =>
  `${line(t)}${common(t)}${headers}\r\n${payload}`;
const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;

/** Every malformed request the fuzzer sends (the names are what reports show). */
export const FRAMING_CASES: readonly FramingCase[] = [
  {
    name: "Content-Length twice, different",
    status: 400,
    build: withHeaders(`Content-Length: ${body.length}\r\nContent-Length: 3\r\n`, body),
  },
  { name: "Content-Length -1", status: 400, build: withHeaders("Content-Length: -1\r\n", body) },
  { name: "Content-Length +14", status: 400, build: withHeaders("Content-Length: +14\r\n", body) },
  { name: "Content-Length 0xe", status: 400, build: withHeaders("Content-Length: 0xe\r\n", body) },
  {
    name: "Content-Length list",
    status: 400,
    build: withHeaders("Content-Length: 14, 14\r\n", body),
  },
  { name: "Content-Length empty", status: 400, build: withHeaders("Content-Length: \r\n") },
  {
    name: "Content-Length beyond 2^64",
    status: 400,
    build: withHeaders("Content-Length: 18446744073709551616\r\n", body),
  },
  {
    name: "Content-Length and Transfer-Encoding",
    status: 400,
    build: withHeaders(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`, chunked),
  },
  {
    name: "Transfer-Encoding: chunked, identity",
    status: 400,
    build: withHeaders("Transfer-Encoding: chunked, identity\r\n", chunked),
  },
  {
    name: "Transfer-Encoding: identity",
    status: 400,
    build: withHeaders("Transfer-Encoding: identity\r\n", body),
  },
  {
    name: "Transfer-Encoding: gzip, chunked",
    status: 400,
    build: withHeaders("Transfer-Encoding: gzip, chunked\r\n", chunked),
  },
  {
    name: "Transfer-Encoding twice",
    status: 400,
    build: withHeaders("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked),
  },
  {
    name: "Transfer-Encoding on HTTP/1.0",
    status: 400,
    build: (t) => `${line(t, "HTTP/1.0")}${common(t)}Transfer-Encoding: chunked\r\n\r\n${chunked}`,
  },
  { name: "target *", status: 400, build: (t) => `${t.method} * HTTP/1.1\r\n${common(t)}\r\n` },
  { name: "OPTIONS *", status: 400, build: (t) => `OPTIONS * HTTP/1.1\r\n${common(t)}\r\n` },
  {
    name: "authority-form target",
    status: 400,
    build: (t) => `CONNECT ${t.host} HTTP/1.1\r\n${common(t)}\r\n`,
  },
  {
    name: "relative target",
    status: 400,
    build: (t) => `${t.method} ${t.path.slice(1)} HTTP/1.1\r\n${common(t)}\r\n`,
  },
  {
    name: "control character in target",
    status: 400,
    build: (t) => `${t.method} ${t.path}\x01 HTTP/1.1\r\n${common(t)}\r\n`,
  },
  {
    name: "non-ASCII byte in target",
    status: 400,
    build: (t) => `${t.method} ${t.path}\xff HTTP/1.1\r\n${common(t)}\r\n`,
  },
  { name: "HTTP/2.0", status: 400, build: (t) => `${line(t, "HTTP/2.0")}${common(t)}\r\n` },
  { name: "HTTP/1.2", status: 400, build: (t) => `${line(t, "HTTP/1.2")}${common(t)}\r\n` },
  { name: "http/1.1", status: 400, build: (t) => `${line(t, "http/1.1")}${common(t)}\r\n` },
  { name: "no version", status: 400, build: (t) => `${t.method} ${t.path}\r\n${common(t)}\r\n` },
  { name: "HTTP/2 preface", status: 400, build: () => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" },
  {
    name: "two spaces in request line",
    status: 400,
    build: (t) => `${t.method}  ${t.path} HTTP/1.1\r\n${common(t)}\r\n`,
  },
  {
    name: "space at end of request line",
    status: 400,
    build: (t) => `${t.method} ${t.path} HTTP/1.1 \r\n${common(t)}\r\n`,
  },
  { name: "folded header", status: 400, build: withHeaders("X-A: b\r\n c\r\n") },
  { name: "space before colon", status: 400, build: withHeaders("X-A : b\r\n") },
  { name: "header without colon", status: 400, build: withHeaders("X-A\r\n") },
  { name: "empty header name", status: 400, build: withHeaders(": b\r\n") },
  { name: "NUL in header value", status: 400, build: withHeaders("X-A: b\0c\r\n") },
  { name: "ESC in header value", status: 400, build: withHeaders("X-A: \x1b[31mred\r\n") },
  { name: "DEL in header value", status: 400, build: withHeaders("X-A: b\x7fc\r\n") },
  {
    name: "two Host headers",
    status: 400,
    build: (t) => `${line(t)}${common(t)}Host: other\r\n\r\n`,
  },
  {
    name: "Host with a path",
    status: 400,
    build: (t) => `${line(t)}Host: a/v1/models?\r\nConnection: close\r\n\r\n`,
  },
  {
    name: "Host with a space",
    status: 400,
    build: (t) => `${line(t)}Host: a b\r\nConnection: close\r\n\r\n`,
  },
  {
    name: "Host port out of range",
    status: 400,
    build: (t) => `${line(t)}Host: a:99999\r\nConnection: close\r\n\r\n`,
  },
  {
    name: "bare LF line ends",
    status: 400,
    build: (t) => `${t.method} ${t.path} HTTP/1.1\nHost: ${t.host}\nConnection: close\n\n`,
  },
  {
    name: "bare CR in head",
    status: 400,
    build: (t) => `${t.method} ${t.path} HTTP/1.1\rHost: ${t.host}\r\nConnection: close\r\n\r\n`,
  },
  {
    name: "101 header fields",
    status: 431,
    build: withHeaders(Array.from({ length: 98 }, (_, i) => `X-${i}: v\r\n`).join("")),
  },
];

/**
 * Sends `raw` (one character per byte) to `baseUrl`'s host over TCP (TLS for https) and reads
 * the answer until the server closes or `timeoutMs` passes; a `1xx` interim answer is skipped.
 */
export async function sendRaw(baseUrl: string, raw: string, timeoutMs = 10_000): Promise<Response> {
  const url = new URL(baseUrl);
  const tls = url.protocol === "https:";
  const options = { hostname: url.hostname, port: Number(url.port || (tls ? 443 : 80)) };
  const conn = tls ? await Deno.connectTls(options) : await Deno.connect(options);
  try {
    await conn.write(Uint8Array.from(raw, (c) => c.charCodeAt(0)));
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no complete answer within ${timeoutMs} ms`);
      const reading = conn.read(buffer);
      reading.catch(() => {});
      const n = await Promise.race([
        reading.catch(() => null),
        new Promise<"timeout">((r) => setTimeout(() => r("timeout"), left)),
      ]);
      if (n === "timeout") throw new Error(`no complete answer within ${timeoutMs} ms`);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
    }
    return parseResponse(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** An HTTP/1.1 answer's bytes as a `Response` (status, headers, body by length, chunks or EOF). */
function parseResponse(bytes: Uint8Array): Response {
  let text = Array.from(bytes, (b) => String.fromCharCode(b)).join("");
  for (;;) {
    const end = text.indexOf("\r\n\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
    if (end < 0 || !status) {
      throw new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 80))}`);
    }
    const headers = new Headers();
    for (const field of text.slice(0, end).split("\r\n").slice(1)) {
      const colon = field.indexOf(":");
      headers.append(field.slice(0, colon).trim(), field.slice(colon + 1).trim());
    }
    let rest = text.slice(end + 4);
    if (status < 200) {
      text = rest;
      continue;
    }
    if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
      let out = "";
      for (;;) {
        const eol = rest.indexOf("\r\n");
        const size = parseInt(rest.slice(0, eol), 16);
        if (!(size > 0)) break;
        out += rest.slice(eol + 2, eol + 2 + size);
        rest = rest.slice(eol + 4 + size);
      }
      rest = out;
    } else if (headers.has("content-length")) {
      rest = rest.slice(0, Number(headers.get("content-length")));
    }
    const payload = Uint8Array.from(rest, (c) => c.charCodeAt(0));
    return new Response(status === 204 || status === 304 ? null : payload, { status, headers });
  }
}
