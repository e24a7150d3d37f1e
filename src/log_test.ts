import assert from "node:assert/strict";
import { Hono } from "hono";
import type { AppEnv } from "./app_env.ts";
import { createLogger, type LogLevel } from "./log.ts";
import { requestLog } from "./middleware/request_log.ts";

/** What clients used to forge or disguise lines: a newline and a fake line, an ANSI escape, NUL, RTL override. */
const HOSTILE = [
  "x\n2026-12-06T00:00:00.000Z ERROR   FORGED LINE",
  "x\r\n2026-12-06T00:00:00.000Z ERROR   FORGED LINE",
  "\x1b[31mred\x1b[0m",
  "a\0b",
  "abc\u202Egnp.exe",
  "8-bit CSI \u009b31m, DEL \x7f, separators \u2028\u2029, isolate \u2066",
];

/** Raw bytes that must never appear in a line. */
const RAW = /[\p{Cc}\p{Zl}\p{Zp}\p{Bidi_Control}]/u;

function capture(format: "text" | "json", level: LogLevel = "debug") {
  const lines: string[] = [];
  return { lines, log: createLogger(level, format, (line) => lines.push(line)) };
}

Deno.test("text log: client-controlled messages and fields are escaped, one line each", () => {
  const { lines, log } = capture("text");
  for (const s of HOSTILE) log.info(`GET /v1/${s} 404`, { id: s, prompt: s });
  assert.equal(lines.length, HOSTILE.length);
  for (const line of lines) {
    assert.doesNotMatch(line, RAW, JSON.stringify(line));
    assert.match(line, /^\S+Z INFO {4}GET \/v1\//);
  }
  assert.match(lines[0], /GET \/v1\/x\\n2026-12-06T00:00:00\.000Z ERROR {3}FORGED LINE 404 id=/);
  assert.match(lines[2], /\\u001b\[31mred/);
  assert.match(lines[3], /a\\u0000b/);
  assert.match(lines[4], /abc\\u202egnp\.exe/);
  // A quoted field reads back exactly as JSON.
  for (const [i, line] of lines.entries()) {
    const prompt = line.match(/ prompt=(".*")$/)![1];
    assert.equal(JSON.parse(prompt), HOSTILE[i]);
  }
});

Deno.test("text log: a backslash in a message is doubled, so an escape cannot be faked", () => {
  const { lines, log } = capture("text");
  log.info("literal \\n and a real \n");
  assert.ok(lines[0].endsWith("literal \\\\n and a real \\n"), lines[0]);
});

Deno.test("JSON log: one object per line that parses back to the exact text, with nothing raw", () => {
  const { lines, log } = capture("json");
  for (const s of HOSTILE) log.debug(`GET /v1/${s} 404`, { id: s, prompt: s });
  assert.equal(lines.length, HOSTILE.length);
  for (const [i, line] of lines.entries()) {
    assert.doesNotMatch(line, RAW, JSON.stringify(line));
    const parsed = JSON.parse(line);
    assert.equal(parsed.msg, `GET /v1/${HOSTILE[i]} 404`);
    assert.equal(parsed.prompt, HOSTILE[i]);
  }
});

Deno.test("the request log writes the path as sent: a %0a cannot start a line", async () => {
  for (const format of ["text", "json"] as const) {
    const { lines, log } = capture(format);
    const app = new Hono<AppEnv>();
    app.use(requestLog(log, () => {}));
    app.get("*", (c) => c.text("no", 404));
    const forged = "/v1/x%0a2026-12-06T00:00:00.000Z%20ERROR%20%20%20FORGED%20LINE";
    for (const path of [forged, "/v1/%1b[31mred", "/v1/a%00b", "/v1/abc%E2%80%AEgnp.exe"]) {
      const res = await app.request(path, { headers: { "x-request-id": "\x1b[31mid" } });
      assert.equal(res.status, 404);
      // An id with a terminal escape is replaced, and the answer carries the one logged.
      assert.match(res.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
    }
    assert.equal(lines.length, 4);
    for (const line of lines) assert.doesNotMatch(line, RAW);
    const first = format === "json" ? JSON.parse(lines[0]).msg : lines[0];
    assert.ok(first.includes(`GET ${forged} 404`), first);
  }
});
