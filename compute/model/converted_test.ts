import assert from "node:assert/strict";
import { ConvertError, ModelLoadError } from "../errors.ts";
import { planConversion } from "./converted.ts";
import { readSafetensors } from "../convert/weights.ts";
import type { DownloadProgress } from "./hub_download.ts";

const DATA = new URL("../../fixtures/reference/data", import.meta.url).pathname;

/** A temporary folder, removed on dispose. */
async function tempDir() {
  const path = await Deno.makeTempDir({ prefix: "converted-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** The names in `dir`, hidden ones included, sorted. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("a diffusers folder converts into the cache once; the next plan finds it", async () => {
  await using cache = await tempDir();
  const first = await planConversion({ src: `${DATA}/sd15`, label: "sd15" }, cache.path);
  assert.equal(first.cached, false);
  assert.match(first.dir, /\/sd15-fp32-[0-9a-f]{16}$/);
  const seen: DownloadProgress[] = [];
  assert.equal(await first.run({ onProgress: (p) => seen.push(p) }), first.dir);
  for (const graph of ["text_encoder", "unet", "vae_decoder", "vae_encoder"]) {
    assert.ok((await Deno.stat(`${first.dir}/${graph}/model.onnx`)).isFile, graph);
  }
  assert.equal(seen[0].bytes, 0);
  assert.equal(seen.at(-1)!.bytes, first.totalBytes);
  assert.ok(seen.every((p, i) => i === 0 || p.bytes >= seen[i - 1].bytes), "progress only grows");
  assert.deepEqual(names(cache.path), [".locks", first.dir.split("/").at(-1)]);
  const again = await planConversion({ src: `${DATA}/sd15`, label: "sd15" }, cache.path);
  assert.deepEqual([again.dir, again.cached], [first.dir, true]);
});

Deno.test("progress counts the stored tensors read, exactly, whatever the output dtype", async () => {
  // The estimate from bytes written it replaces undercounted q4 (int8 convs, packed 4-bit Linears).
  let stored = 0;
  for (
    const part of [
      "text_encoder/model",
      "unet/diffusion_pytorch_model",
      "vae/diffusion_pytorch_model",
    ]
  ) {
    for (const t of (await readSafetensors(`${DATA}/sd15/${part}.safetensors`)).values()) {
      stored += t.length;
    }
  }
  await using cache = await tempDir();
  const plan = await planConversion(
    { src: `${DATA}/sd15`, label: "sd15", dtype: "q4" },
    cache.path,
  );
  const seen: number[] = [];
  await plan.run({ onProgress: (p) => seen.push(p.bytes) });
  assert.ok(seen.length > 100, `one report per tensor (${seen.length})`);
  assert.ok(seen.every((b, i) => i === 0 || b > seen[i - 1]), "each report counts more");
  // Before the end: every tensor's bytes, the headers not (they are counted at the end).
  assert.equal(seen.at(-2), stored);
  assert.ok(stored < plan.totalBytes);
  assert.equal(seen.at(-1), plan.totalBytes);
});

Deno.test("the key follows the source's files and the config folder; a dtype the converter lacks is refused", async () => {
  await using cache = await tempDir();
  await using src = await tempDir();
  const cp = await new Deno.Command("cp", { args: ["-r", `${DATA}/sd15`, src.path] }).output();
  assert.ok(cp.success);
  const plan = (source: Partial<Parameters<typeof planConversion>[0]>) =>
    planConversion({ src: `${src.path}/sd15`, label: "sd15", ...source }, cache.path);
  const base = (await plan({})).dir;
  assert.equal((await plan({ label: "sd15" })).dir, base, "stable");
  const unet = `${src.path}/sd15/unet/diffusion_pytorch_model.safetensors`;
  await Deno.utime(unet, new Date(), new Date(2000, 0, 1));
  assert.notEqual((await plan({})).dir, base, "a changed weights file is another model");
  await assert.rejects(
    plan({ dtype: "fp12" }),
    /--convert-dtype fp12 is not supported \(supported: fp32/,
  );
  const single = (config: string) =>
    planConversion({ src: `${DATA}/sd15.safetensors`, config, label: "sd15" }, cache.path);
  assert.notEqual((await single(`${DATA}/sd15`)).dir, (await single(`${DATA}/sdxl`)).dir);
});

Deno.test("servers converting the same model at once take turns and share one result", async () => {
  await using cache = await tempDir();
  const plans = await Promise.all(
    [0, 1].map(() => planConversion({ src: `${DATA}/sd15`, label: "sd15" }, cache.path)),
  );
  const dirs = await Promise.all(plans.map((p) => p.run()));
  assert.equal(dirs[0], dirs[1]);
  assert.deepEqual(names(cache.path), [".locks", dirs[0].split("/").at(-1)]);
});

Deno.test("a failed conversion is one line and leaves nothing in the cache", async () => {
  await using cache = await tempDir();
  // A killed run's temporary folder is cleared by the next run of the same key.
  const plan = await planConversion(
    { src: `${DATA}/sd15.safetensors`, config: `${DATA}/sdxl`, label: "sd15" },
    cache.path,
  );
  const stale = `${cache.path}/.${plan.dir.split("/").at(-1)}.converting-killed`;
  await Deno.mkdir(stale);
  await assert.rejects(
    plan.run(),
    (e: Error) =>
      e instanceof ModelLoadError && !e.message.includes("\n") &&
      /single-file SD 1\.x checkpoint needs a StableDiffusionPipeline folder/.test(e.message),
  );
  assert.deepEqual(names(cache.path), [".locks"]);
  await assert.rejects(
    planConversion({ src: `${DATA}/sd15/scheduler`, label: "x" }, cache.path),
    /no \.safetensors weights to convert/,
  );
  // A single file whose keys name no known family (the tiny reference's UNet has 3 levels, not
  // SD's 4) is refused when planned, before a server listens.
  await assert.rejects(
    planConversion({ src: `${DATA}/sd15.safetensors`, label: "x" }, cache.path),
    (e: Error) =>
      e instanceof ConvertError && !e.message.includes("\n") &&
      /cannot tell its model family from its keys .* --model-config \(serve\)/.test(e.message),
  );
});
