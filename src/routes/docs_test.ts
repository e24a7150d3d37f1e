import assert from "node:assert/strict";
import { parse } from "yaml";
import { testApp } from "../testing.ts";

Deno.test("/openapi.json is openapi.yaml; /docs and its assets are served locally", async () => {
  const { app } = testApp();
  const spec = parse(Deno.readTextFileSync(new URL("../../openapi.yaml", import.meta.url)));
  assert.deepEqual(await (await app.request("/openapi.json")).json(), spec);
  const page = await (await app.request("/docs")).text();
  assert.match(page, /\/docs\/assets\/swagger-ui-bundle\.js/);
  const css = await app.request("/docs/assets/swagger-ui.css");
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  await css.body?.cancel();
  assert.equal((await app.request("/docs/assets/other.js")).status, 404);
});
