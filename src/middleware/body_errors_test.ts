import assert from "node:assert/strict";
import { Hono } from "hono";
import type { AppEnv } from "../app_env.ts";
import { onError } from "../error_handler.ts";
import { createLogger } from "../log.ts";
import { bodyErrors } from "./body_errors.ts";

Deno.test("bodyErrors: a body whose reading fails is a 400 malformed_request, not a 500", async () => {
  const app = new Hono<AppEnv>();
  app.onError(onError(createLogger("error", "text", () => {})));
  app.use(bodyErrors());
  app.post("/", async (c) => c.text(await c.req.text()));
  const broken = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode("{"));
      c.error(new Deno.errors.BadResource("broken chunk"));
    },
  });
  const res = await app.request(
    "/",
    { method: "POST", body: broken, duplex: "half" } as RequestInit,
  );
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, "malformed_request");
  const fine = await app.request("/", { method: "POST", body: "whole" });
  assert.equal(await fine.text(), "whole");
});
