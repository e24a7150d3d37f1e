/**
 * The server's log: one line per event with a timestamp, a level and (for request lines) the
 * request id, as text or as JSON objects (`--log-format`), filtered by `--log-level`.
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

/** A text value as it appears in a text line: bare when plain, JSON-quoted otherwise. */
function show(value: string | number | boolean): string {
  const s = String(value);
  return /^[\w.:/@+-]*$/.test(s) && s !== "" ? s : JSON.stringify(s);
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
      ? JSON.stringify({ ts, level: at, msg: message, ...Object.fromEntries(defined) })
      : [ts, at.toUpperCase().padEnd(7), message, ...defined.map(([k, v]) => `${k}=${show(v)}`)]
        .join(" ");
    write(line, at === "warning" || at === "error" ? "err" : "out");
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warning: emit("warning"),
    error: emit("error"),
  };
}
