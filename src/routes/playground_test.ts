import assert from "node:assert/strict";
import { testApp } from "../testing.ts";

Deno.test("the playground's page and assets are served from web/, never cached stale", async () => {
  const { app } = testApp();
  const page = await app.request("/");
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(page.headers.get("cache-control"), "no-cache");
  assert.equal(
    await page.text(),
    Deno.readTextFileSync(new URL("../../web/index.html", import.meta.url)),
  );
  const js = await app.request("/playground/playground.js");
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  await js.body?.cancel();
});
