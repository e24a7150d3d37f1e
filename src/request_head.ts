/**
 * `checkHead(head)`: whether an HTTP/1.1 request head is well-formed and frames its body one
 * way only, before the header guard (`src/header_guard.ts`) hands it to `Deno.serve`.
 *
 * `Deno.serve`'s own parser answers malformed requests with an empty 400 (no body, no request id,
 * nothing logged), and accepts some heads whose meaning parsers disagree on: a Host that changes
 * the path the app sees (`Host: a/v1/models?` makes `GET /health` the model list), `OPTIONS *`,
 * `Transfer-Encoding: gzip, chunked`, bare-LF line ends. This check is the stricter of the two
 * on every point (RFC 9112 grammar), so that each such request gets the documented error body
 * from the guard instead.
 *
 * @module
 */

/** Most header fields a request may have (`Deno.serve` refuses more than 128). */
export const MAX_HEADER_FIELDS = 100;

/** A head that may be served: what the access log and the request id need. */
export interface AcceptedHead {
  ok: true;
  method: string;
  target: string;
  /** The client's `x-request-id`, if any. */
  requestId?: string;
}

/** A head that must not be served: the answer's status, error code and message. */
export interface RefusedHead {
  ok: false;
  status: 400 | 431;
  code: "malformed_request" | "too_many_headers";
  message: string;
  /** What could be read of the request line, for the log. */
  method?: string;
  target?: string;
  requestId?: string;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A header value: visible ASCII, space, tab and obs-text (bytes 0x80–0xFF); no controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Host: a reg-name or IP literal (RFC 3986), then an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::(\d{0,5}))?$/;
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)(?:[/?#][\x21-\x7e]*)?$/i;

/**
 * The method and target of a head that was cut short (timed out, too large), for the log: only
 * from a whole, well-formed request line.
 */
export function requestLine(partial: Uint8Array): { method?: string; target?: string } {
  const end = partial.indexOf(13);
  const line = Array.from(partial.subarray(0, end < 0 ? 0 : end), (b) => String.fromCharCode(b))
    .join("");
  const [method, target, version, ...more] = line.split(" ");
  return more.length === 0 && version && TOKEN.test(method) ? { method, target } : {};
}

function validHost(host: string): boolean {
  const m = HOST.exec(host);
  if (!m || Number(m[1] ?? 0) > 65535) return false;
  return host === "" || URL.canParse(`http://${host}/`);
}

/** What is wrong with a request line, if anything. */
function requestLineProblem(parts: string[]): string | undefined {
  const [method, target, version] = parts;
  if (parts.length !== 3 || !TOKEN.test(method)) {
    return "The request line must be METHOD SP TARGET SP HTTP-VERSION, one space apart.";
  }
  if (!/^HTTP\/1\.[01]$/.test(version)) {
    return `HTTP version '${version}' is not served; send HTTP/1.1.`;
  }
  const absolute = ABSOLUTE_FORM.exec(target);
  if (!ORIGIN_FORM.test(target) && !(absolute && validHost(absolute[1]))) {
    return target === "*"
      ? "The request target '*' (asterisk form) is not served; send a path such as /v1/models."
      : "The request target must be a path such as /v1/models (or an absolute http URL).";
  }
  return undefined;
}

/** The header fields by lower-case name, or what is wrong with one of them. */
function headerValues(fields: string[]): Map<string, string[]> | string {
  const values = new Map<string, string[]>();
  for (const field of fields) {
    if (/^[ \t]/.test(field)) {
      return "A header line starts with whitespace (obsolete line folding).";
    }
    const colon = field.indexOf(":");
    const name = field.slice(0, colon);
    const value = field.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (colon < 0 || !TOKEN.test(name)) {
      return "A header line is not NAME: VALUE (a token, then a colon, no space before it).";
    }
    if (!FIELD_VALUE.test(value)) return `The value of header '${name}' holds a control character.`;
    const key = name.toLowerCase();
    values.set(key, [...values.get(key) ?? [], value]);
  }
  return values;
}

/** What is wrong with the Host and the body framing headers, if anything. */
function framingProblem(values: Map<string, string[]>, version: string): string | undefined {
  const hosts = values.get("host") ?? [];
  if (hosts.length > 1) return "The request has more than one Host header.";
  if (hosts.length === 1 && !validHost(hosts[0])) {
    return "The Host header must be a host name or address, with an optional port.";
  }
  const lengths = values.get("content-length");
  const codings = values.get("transfer-encoding");
  if (lengths) {
    if (!lengths.every((v) => /^\d+$/.test(v) && Number.isSafeInteger(Number(v)))) {
      return "Content-Length must be a non-negative decimal integer.";
    }
    if (new Set(lengths.map(Number)).size > 1) {
      return "The request has Content-Length headers that disagree.";
    }
  }
  if (codings) {
    if (version === "HTTP/1.0") return "Transfer-Encoding is not allowed in HTTP/1.0.";
    if (codings.length > 1 || codings[0].toLowerCase() !== "chunked") {
      return "Transfer-Encoding must be exactly 'chunked' (no other transfer coding).";
    }
    if (lengths) return "The request has both Content-Length and Transfer-Encoding; send one.";
  }
  return undefined;
}

/**
 * Checks a request head: the bytes up to and including its blank line, or up to a bare LF
 * (which is refused). Bytes are read as Latin-1, one character each.
 */
export function checkHead(head: Uint8Array): AcceptedHead | RefusedHead {
  const text = Array.from(head, (b) => String.fromCharCode(b)).join("");
  const lines = text.replace(/\r\n\r\n$/, "").split("\r\n");
  // RFC 9112 §2.2: empty lines before the request line are ignored.
  while (lines.length > 1 && lines[0] === "") lines.shift();
  const [requestLine, ...fields] = lines;
  const parts = requestLine.split(" ");
  const [method, target, version] = parts;
  const requestId = /\r\nx-request-id:[ \t]*([\x21-\x7e]+)[ \t]*\r\n/i.exec(text)?.[1];
  const refuse = (message: string, status: 400 | 431 = 400): RefusedHead => ({
    ok: false,
    status,
    code: status === 431 ? "too_many_headers" : "malformed_request",
    message,
    method: method && TOKEN.test(method) ? method : undefined,
    target: parts.length > 1 ? target : undefined,
    requestId,
  });

  if (/[\r\n]/.test(lines.join(""))) {
    return refuse("A line of the request head ends with a bare CR or LF; lines end with CRLF.");
  }
  const lineProblem = requestLineProblem(parts);
  if (lineProblem) return refuse(lineProblem);
  if (fields.length > MAX_HEADER_FIELDS) {
    return refuse(`The request has more than ${MAX_HEADER_FIELDS} header fields.`, 431);
  }
  const values = headerValues(fields);
  if (typeof values === "string") return refuse(values);
  const framing = framingProblem(values, version);
  if (framing) return refuse(framing);
  return { ok: true, method, target, requestId };
}
