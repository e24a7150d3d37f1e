import assert from "node:assert/strict";
import { ImageStore } from "./image_store.ts";

Deno.test("the image store is bounded in bytes (oldest dropped) and in age", async () => {
  const store = new ImageStore(250, 50);
  const a = store.put(new Uint8Array(100), "image/png");
  const b = store.put(new Uint8Array(100), "image/png");
  const c = store.put(new Uint8Array(100), "image/png");
  assert.equal(store.get(a), undefined);
  assert.ok(store.get(b) && store.get(c));
  assert.equal(store.bytes, 200);
  assert.equal(store.fits(251), false);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(store.get(c), undefined);
  assert.equal(store.bytes, 0);
});
