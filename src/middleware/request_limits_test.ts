import assert from "node:assert/strict";
import { Hono } from "hono";
import type { AppEnv } from "../app_env.ts";
import { onError } from "../error_handler.ts";
import { createLogger } from "../log.ts";
import { bodySizeLimit, MAX_BODY_BYTES, requestLimits } from "./request_limits.ts";

function app(
  limits: { maxConcurrent: number; bodyTimeoutMs: number },
  handler?: () => Promise<void>,
) {
  const app = new Hono<AppEnv>();
  app.onError(onError(createLogger("error", "text", () => {})));
  app.use(requestLimits(limits));
  app.post("/", async (c) => {
    await handler?.();
    return c.text(String((await c.req.arrayBuffer()).byteLength));
  });
  return app;
}

Deno.test("requestLimits: beyond maxConcurrent in flight, 429 server_busy with retry-after", async () => {
  const release = Promise.withResolvers<void>();
  const a = app({ maxConcurrent: 1, bodyTimeoutMs: 1000 }, () => release.promise);
  const first = a.request("/", { method: "POST", body: "x" });
  await new Promise((r) => setTimeout(r, 10));
  const second = await a.request("/", { method: "POST", body: "y" });
  assert.equal(second.status, 429);
  assert.equal(second.headers.get("retry-after"), "1");
  assert.equal((await second.json()).error.code, "server_busy");
  release.resolve();
  assert.equal(await (await first).text(), "1");
  // The slot is free again.
  assert.equal((await a.request("/", { method: "POST", body: "z" })).status, 200);
});

Deno.test("requestLimits: a body that does not arrive in time is 408 body_timeout", async () => {
  const a = app({ maxConcurrent: 4, bodyTimeoutMs: 30 });
  const stalled = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new Uint8Array(1)) });
  const res = await a.request(
    "/",
    { method: "POST", body: stalled, duplex: "half" } as RequestInit,
  );
  assert.equal(res.status, 408);
  assert.equal((await res.json()).error.code, "body_timeout");
});

Deno.test("bodySizeLimit: one byte over the limit is 413 request_too_large", async () => {
  const a = new Hono<AppEnv>();
  a.onError(onError(createLogger("error", "text", () => {})));
  a.use(bodySizeLimit());
  a.post("/", async (c) => c.text(String((await c.req.arrayBuffer()).byteLength)));
  const ok = await a.request("/", { method: "POST", body: new Uint8Array(MAX_BODY_BYTES) });
  assert.equal(await ok.text(), String(MAX_BODY_BYTES));
  const over = await a.request("/", { method: "POST", body: new Uint8Array(MAX_BODY_BYTES + 1) });
  assert.equal(over.status, 413);
  assert.equal((await over.json()).error.code, "request_too_large");
});
