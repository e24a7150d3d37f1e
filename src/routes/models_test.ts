import assert from "node:assert/strict";
import { FakeEngine, testApp } from "../testing.ts";
import { MemoryImageStore } from "../image_store.ts";

Deno.test("GET /v1/models: the served model with its family, limits and defaults once loaded", async () => {
  const engine = new FakeEngine();
  const { app } = testApp({ engine, config: { modelAliases: ["x"] } });
  const [model] = (await (await app.request("/v1/models")).json()).data;
  assert.equal(model.id, "test/model");
  assert.equal(model.root, "model");
  assert.equal(model.parent, null);
  assert.equal(model.family, "StableDiffusionPipeline");
  assert.equal(model.size_multiple, 8);
  assert.equal(model.max_image_pixels, 1024 * 1024);
  assert.deepEqual(model.defaults, { size: "64x64", num_inference_steps: 2, guidance_scale: 7.5 });
  engine.state = { status: "loading" };
  const [loading] = (await (await app.request("/v1/models")).json()).data;
  assert.equal(loading.id, "test/model");
  assert.equal(loading.family, undefined);
});

Deno.test("GET /v1/images/files/{id}: a stored image, then 404 for an unknown id", async () => {
  const store = new MemoryImageStore();
  const id = await store.put(new Uint8Array([1, 2, 3]), "image/png");
  const { app } = testApp({ services: { store } });
  const res = await app.request(`/v1/images/files/${id}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "image/png");
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array([1, 2, 3]));
  const missing = await app.request("/v1/images/files/nope");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "not_found");
});
