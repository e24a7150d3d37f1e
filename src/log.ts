/**
 * The server's log: one line per event with a timestamp, a level and (for request lines) the
 * request id, as text or as JSON objects (`--log-format`), filtered by `--log-level`.
 *
 * Messages and fields carry what clients send (paths, request ids, prompts at debug), so every
 * line is escaped: no newline, terminal escape, NUL or bidi override reaches the output raw, and
 * a client cannot forge a line or disguise one. Text lines write such a character as `\n`, `\t`,
 * `\r` or `\uXXXX` (a backslash in a message as `\\`); JSON lines as JSON escapes, so that
 * `JSON.parse` gives back the exact text.
 *
 * @module
 */

/** Severity, lowest first (vLLM's names). */
export type LogLevel = "debug" | "info" | "warning" | "error";
const ORDER: readonly LogLevel[] = ["debug", "info", "warning", "error"];

/** Structured fields of a line (request id, timings, …). */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Writes log lines. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warning(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/**
 * Characters that must not reach a log raw: controls (C0 including newline and ESC, DEL, C1,
 * whose U+009B is an 8-bit terminal escape), the line and paragraph separators, and the bidi
 * controls (U+202E and its kin reorder what a terminal or editor shows).
 */
const UNSAFE = /[\p{Cc}\p{Zl}\p{Zp}\p{Bidi_Control}]/gu;
const SHORT: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function escapeChar(c: string): string {
  return SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * `text` with every character of {@linkcode UNSAFE} written as an escape. JSON text stays valid
 * JSON meaning the same (its escapes are JSON's); with `backslash`, `\` becomes `\\`, so that
 * escaped text reads back unambiguously.
 */
export function escapeForLog(text: string, { backslash = false } = {}): string {
  return backslash
    ? text.replace(/\\/g, "\\\\").replace(UNSAFE, escapeChar)
    : text.replace(UNSAFE, escapeChar);
}

/** A value as it appears in a text line: bare when plain, JSON-quoted (and escaped) otherwise. */
function show(value: string | number | boolean): string {
  const s = String(value);
  return /^[\w.:/@+-]+$/.test(s) ? s : escapeForLog(JSON.stringify(s));
}

/** A logger writing to stdout (debug, info) and stderr (warning, error). */
export function createLogger(
  level: LogLevel = "info",
  format: "text" | "json" = "text",
  write: (line: string, stream: "out" | "err") => void = (line, stream) =>
    (stream === "out" ? console.log : console.error)(line),
): Logger {
  const min = ORDER.indexOf(level);
  const emit = (at: LogLevel) => (message: string, fields: LogFields = {}) => {
    if (ORDER.indexOf(at) < min) return;
    const ts = new Date().toISOString();
    const defined = Object.entries(fields).filter(([, v]) => v !== undefined) as [
      string,
      string | number | boolean,
    ][];
    const line = format === "json"
      ? escapeForLog(
        JSON.stringify({ ts, level: at, msg: message, ...Object.fromEntries(defined) }),
      )
      : [
        ts,
        at.toUpperCase().padEnd(7),
        escapeForLog(message, { backslash: true }),
        ...defined.map(([k, v]) => `${escapeForLog(k, { backslash: true })}=${show(v)}`),
      ].join(" ");
    write(line, at === "warning" || at === "error" ? "err" : "out");
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warning: emit("warning"),
    error: emit("error"),
  };
}
