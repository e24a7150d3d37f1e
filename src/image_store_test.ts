import assert from "node:assert/strict";
import { DirectoryImageStore, MemoryImageStore } from "./image_store.ts";

Deno.test("the memory store is bounded in bytes (oldest dropped) and in age", async () => {
  const store = new MemoryImageStore(250, 50);
  const a = await store.put(new Uint8Array(100), "image/png");
  const b = await store.put(new Uint8Array(100), "image/png");
  const c = await store.put(new Uint8Array(100), "image/png");
  assert.equal(await store.get(a), undefined);
  assert.ok((await store.get(b)) && (await store.get(c)));
  assert.equal(store.bytes, 200);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await store.get(c), undefined);
  assert.equal(store.bytes, 0);
});

Deno.test("the directory store is shared, bounded in bytes and age, and names no other file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const one = new DirectoryImageStore(dir, 250, 60_000);
    const two = new DirectoryImageStore(dir, 250, 60_000);
    const a = await one.put(Uint8Array.of(1, 2, 3), "image/png");
    assert.deepEqual(await two.get(a), { bytes: Uint8Array.of(1, 2, 3), mime: "image/png" });
    const b = await two.put(new Uint8Array(200), "image/webp");
    await new Promise((r) => setTimeout(r, 20));
    await one.put(new Uint8Array(100), "image/jpeg");
    assert.equal(await one.get(a), undefined, "the oldest went to keep the directory in bounds");
    assert.equal(await one.get(b), undefined);
    assert.equal(await one.get("../../etc/passwd"), undefined);
    const old = new DirectoryImageStore(dir, 10_000, 1);
    const c = await old.put(Uint8Array.of(9), "image/png");
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(await old.get(c), undefined, "expired");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
