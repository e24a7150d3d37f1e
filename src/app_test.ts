/** The app's middleware chain, in-process: order, shapes and headers of what it refuses. */
import assert from "node:assert/strict";
import { testApp } from "./testing.ts";

Deno.test("app: an unknown path is the documented 404 with a request id", async () => {
  const { app } = testApp();
  const res = await app.request("/nope", { headers: { "x-request-id": "abc" } });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get("x-request-id"), "abc");
  assert.deepEqual(await res.json(), {
    detail: "Not found.",
    error: { message: "Not found.", type: "invalid_request_error", param: null, code: "not_found" },
  });
});

Deno.test("app: a draining server refuses /v1/* with 503 and retry-after; /health says why", async () => {
  const { app, post } = testApp({ services: { live: { draining: true, listenUrl: "" } } });
  const res = await post("/v1/images/generations", { prompt: "x" });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("retry-after"), "5");
  assert.equal((await res.json()).error.code, "shutting_down");
  const health = await app.request("/health");
  assert.equal(health.status, 503);
  assert.equal((await health.json()).reason, "The server is shutting down");
});

Deno.test("app: --api-key guards /v1/* and /metrics, not /health; a wrong key is 401", async () => {
  const { app } = testApp({ config: { apiKey: "k" } });
  const denied = await app.request("/v1/models");
  assert.equal(denied.status, 401);
  assert.equal((await denied.json()).error.code, "invalid_api_key");
  assert.equal((await app.request("/metrics")).status, 401);
  assert.equal((await app.request("/health")).status, 200);
  const wrong = await app.request("/v1/models", { headers: { authorization: "Bearer x" } });
  assert.equal(wrong.status, 401);
  const ok = await app.request("/v1/models", { headers: { authorization: "bearer k" } });
  assert.equal(ok.status, 200);
});

Deno.test("app: --public-metrics leaves /metrics open with a key", async () => {
  const { app } = testApp({ config: { apiKey: "k", publicMetrics: true } });
  assert.equal((await app.request("/metrics")).status, 200);
});

Deno.test("app: CORS preflight is answered before auth", async () => {
  const { app } = testApp({
    config: {
      apiKey: "k",
      cors: { origins: ["http://a.example"], methods: ["*"], headers: ["*"], credentials: false },
    },
  });
  const res = await app.request("/v1/models", {
    method: "OPTIONS",
    headers: { origin: "http://a.example", "access-control-request-method": "POST" },
  });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), "http://a.example");
});

Deno.test("app: bodies: over 1 MiB is 413, not JSON is 415, bad JSON is 422", async () => {
  const { app } = testApp();
  const big = await app.request("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "x".repeat(1024 * 1024) }),
  });
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, "request_too_large");
  const text = await app.request("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "{}",
  });
  assert.equal(text.status, 415);
  const broken = await app.request("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{",
  });
  assert.equal(broken.status, 422);
  assert.equal((await broken.json()).detail[0].type, "value_error.jsondecode");
});

Deno.test("app: a schema violation is a 422 listing every field", async () => {
  const { post } = testApp();
  const res = await post("/v1/images/generations", { n: 0 });
  assert.equal(res.status, 422);
  const body = await res.json();
  assert.deepEqual(body.detail.map((d: { loc: string[] }) => d.loc.join(".")).sort(), [
    "body.n",
    "body.prompt",
  ]);
});

Deno.test("app: every request gets one access line and an http metric", async () => {
  const { app, logged } = testApp();
  await app.request("/version");
  assert.deepEqual(logged().filter((l) => l.level === "info").map((l) => l.msg), [
    "GET /version 200",
  ]);
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /denoise_http_requests_total\{[^}]*route="\/version"[^}]*\} 1/);
});
