import assert from "node:assert/strict";
import { fixtureCache } from "../../fixtures/hf_cache.ts";
import { ModelNotFoundError } from "../errors.ts";
import { hubCacheDirs, looksLikePath, resolveModel } from "./resolve.ts";

const FIXTURE = new URL("../../fixtures/models/sd-turbo-tiny", import.meta.url).pathname;

Deno.test("resolveModel finds a repo id in the HF cache layout via refs/main", async () => {
  const cache = await fixtureCache("stabilityai/sd-turbo");
  try {
    const env = (n: string) =>
      ({ HF_HUB_CACHE: cache, HOME: "/nonexistent" } as Record<string, string>)[n];
    const r = await resolveModel("stabilityai/sd-turbo", env);
    assert.equal(r.source, "hf-cache");
    assert.equal(r.dir, `${cache}/models--stabilityai--sd-turbo/snapshots/0123abcd`);
    // HF_HOME/hub works too.
    const home = (n: string) =>
      ({ HF_HOME: cache.replace(/\/[^/]+$/, "") } as Record<string, string>)[n];
    assert.ok(hubCacheDirs(home)[0].endsWith("/hub"));
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("resolveModel takes local folders as they are and explains where it looked otherwise", async () => {
  assert.deepEqual(await resolveModel(FIXTURE), { dir: FIXTURE, source: "local", format: "onnx" });
  const env = (n: string) => ({ HF_HUB_CACHE: "/tmp/empty-cache" } as Record<string, string>)[n];
  await assert.rejects(
    () => resolveModel("Qwen/Qwen-Image", env),
    (e: Error) =>
      e instanceof ModelNotFoundError &&
      e.message.includes("/tmp/empty-cache/models--Qwen--Qwen-Image") &&
      e.message.includes("--model DIR"),
  );
});

Deno.test("a --model that looks like a path and does not exist is not taken for a hub id", async () => {
  for (
    const spec of ["./missing_dir", "../x", "/abs/missing", "~/models/x", "a/b/c", "Org/Name/"]
  ) {
    assert.ok(looksLikePath(spec), spec);
    await assert.rejects(
      () => resolveModel(spec, () => undefined),
      (e: Error) => e instanceof ModelNotFoundError && e.message.includes("does not exist"),
    );
  }
  for (const spec of ["Qwen/Qwen-Image", "stabilityai/sd-turbo", "model"]) {
    assert.ok(!looksLikePath(spec), spec);
  }
});

Deno.test("a local folder of .safetensors or a single .safetensors file is resolved for conversion; pickles are refused", async () => {
  const data = new URL("../../fixtures/reference/data", import.meta.url).pathname;
  assert.equal((await resolveModel(`${data}/sd15`)).format, "safetensors");
  assert.equal((await resolveModel(`${data}/sd15.safetensors`)).format, "single-file");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/unet`);
    await Deno.writeTextFile(`${dir}/model_index.json`, "{}");
    await Deno.writeFile(`${dir}/unet/diffusion_pytorch_model.bin`, new Uint8Array(8));
    await Deno.writeFile(`${dir}/model.ckpt`, new Uint8Array(8));
    await Deno.writeTextFile(`${dir}/notes.txt`, "x");
    await assert.rejects(
      () => resolveModel(dir),
      /holds pickled PyTorch weights \(.*\.(bin|ckpt)\).*refused/,
    );
    await assert.rejects(
      () => resolveModel(`${dir}/model.ckpt`),
      /pickled PyTorch checkpoint: refused/,
    );
    await assert.rejects(
      () => resolveModel(`${dir}/notes.txt`),
      /is a file, expected a model folder or a single-file \.safetensors checkpoint/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
