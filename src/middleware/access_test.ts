import assert from "node:assert/strict";
import { Hono, type MiddlewareHandler } from "hono";
import type { AppEnv } from "../app_env.ts";
import { onError } from "../error_handler.ts";
import { createLogger } from "../log.ts";
import { apiKeyAuth, corsAccess, refuseWhileDraining } from "./access.ts";

function app(middleware: MiddlewareHandler<AppEnv>) {
  const app = new Hono<AppEnv>();
  app.onError(onError(createLogger("error", "text", () => {})));
  app.use(middleware);
  app.get("/", (c) => c.text("ok"));
  return app;
}

Deno.test("refuseWhileDraining: admits until the live state says draining", async () => {
  const live = { draining: false };
  const a = app(refuseWhileDraining(live));
  assert.equal((await a.request("/")).status, 200);
  live.draining = true;
  const res = await a.request("/");
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("retry-after"), "5");
});

Deno.test("apiKeyAuth: the documented 401 with WWW-Authenticate; the right key passes", async () => {
  const a = app(apiKeyAuth("k"));
  const denied = await a.request("/");
  assert.equal(denied.status, 401);
  assert.match(denied.headers.get("www-authenticate") ?? "", /Bearer/);
  assert.equal((await denied.json()).error.code, "invalid_api_key");
  assert.equal((await a.request("/", { headers: { authorization: "Bearer k" } })).status, 200);
});

Deno.test("corsAccess: '*' origins answer any origin; a listed origin only itself", async () => {
  const any = app(
    corsAccess({ origins: ["*"], methods: ["*"], headers: ["*"], credentials: false }),
  );
  const res = await any.request("/", { headers: { origin: "http://x.example" } });
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("access-control-expose-headers")!, /x-request-id/);
  const listed = app(
    corsAccess({ origins: ["http://a.example"], methods: ["GET"], headers: [], credentials: true }),
  );
  const other = await listed.request("/", { headers: { origin: "http://b.example" } });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});
