import assert from "node:assert/strict";
import { Hono } from "hono";
import type { AppEnv } from "../app_env.ts";
import { createLogger } from "../log.ts";
import { MAX_REQUEST_ID_LENGTH, requestIdFrom, requestLog } from "./request_log.ts";

Deno.test("requestIdFrom: a short printable id is kept; anything else gets a fresh UUID", () => {
  assert.equal(requestIdFrom("abc-123"), "abc-123");
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  for (const bad of [null, "", "a b", "x".repeat(MAX_REQUEST_ID_LENGTH + 1), "é"]) {
    assert.match(requestIdFrom(bad), uuid);
  }
});

Deno.test("requestLog: echoes the id; a streamed response is logged when its stream ends", async () => {
  const lines: Record<string, unknown>[] = [];
  const finished: number[] = [];
  const app = new Hono<AppEnv>();
  app.use(requestLog(
    createLogger("info", "json", (l) => lines.push(JSON.parse(l))),
    (_method, _route, status) => finished.push(status),
  ));
  const end = Promise.withResolvers<void>();
  app.get("/stream", (c) => {
    const ended = c.get("outcome").streaming();
    void end.promise.then(() => ended(499));
    return c.text("streaming");
  });
  app.get("/plain", (c) => c.text("ok", 201));
  const res = await app.request("/plain?q=1", { headers: { "x-request-id": "r1" } });
  assert.equal(res.headers.get("x-request-id"), "r1");
  assert.deepEqual([lines[0].msg, lines[0].id], ["GET /plain 201", "r1"]);
  await app.request("/stream");
  assert.equal(lines.length, 1, "no line before the stream ends");
  end.resolve();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(lines[1].msg, "GET /stream 499");
  assert.deepEqual(finished, [201, 499]);
});
