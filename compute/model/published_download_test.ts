/**
 * `--model webnn/sdxl-turbo` (or any published layout) against a fake hub: only the chosen
 * variant's graphs are downloaded, the snapshot is found complete in the cache afterwards, and it
 * loads.
 */
import assert from "node:assert/strict";
import { folderFiles, startFakeHub } from "../../fixtures/fake_hub.ts";
import { loadPipeline } from "../load.ts";
import { resolveModel } from "./resolve.ts";

const REPO = "webnn/sdxl-turbo";

/** The replica with a second variant (`qdq_q4f16`) and the files the real repo has besides. */
async function repoFiles(): Promise<Record<string, Uint8Array<ArrayBuffer>>> {
  const root = new URL("../../fixtures/models/sdxl-turbo-webnn-tiny", import.meta.url).pathname;
  const files = await folderFiles(root);
  for (const [path, bytes] of Object.entries(files)) {
    if (path.endsWith("_q4f16.onnx")) files[path.replace("_q4f16", "_qdq_q4f16")] = bytes;
  }
  files["onnx/unet_model_q4f16.onnx_data"] = new Uint8Array(8);
  files["README.md"] = new TextEncoder().encode("# SDXL-Turbo for WebNN\n");
  return files;
}

for (const variant of [undefined, "qdq_q4f16"]) {
  Deno.test(`${REPO} downloads only the ${variant ?? "default (q4f16)"} variant's graphs, then resolves from the cache and loads`, async () => {
    await using hub = await startFakeHub({
      repoId: REPO,
      fixture: "",
      withoutFixture: true,
      extraFiles: await repoFiles(),
    });
    const cache = await Deno.makeTempDir({ prefix: "hf-published-" });
    const vars: Record<string, string> = {
      HF_HUB_CACHE: cache,
      HF_ENDPOINT: hub.url,
      HOME: "/nonexistent",
    };
    const env = (n: string) => vars[n];
    try {
      const resolved = await resolveModel(REPO, env, variant);
      assert.equal(resolved.source, "hub");
      if (resolved.source !== "hub") return;
      const chosen = variant ?? "q4f16";
      assert.equal(resolved.plan.published?.variant, chosen);
      const paths = resolved.plan.files.map((f) => f.path);
      const graphs = ["text_encoder", "text_encoder_2", "unet", "vae_decoder"].map((g) =>
        `onnx/${g}_model_${chosen}.onnx`
      );
      assert.deepEqual(
        paths.sort(),
        [...graphs, ...(chosen === "q4f16" ? ["onnx/unet_model_q4f16.onnx_data"] : [])].sort(),
      );
      assert.ok(resolved.plan.skipped.includes("onnx/scheduler_model_f16.onnx"));
      const dir = await resolved.download();
      const again = await resolveModel(REPO, env, variant);
      assert.deepEqual(again, { dir, source: "hf-cache", format: "onnx" });
      const pipeline = await loadPipeline(dir, { device: "cpu", variant });
      try {
        assert.equal(pipeline.family, "StableDiffusionXLPipeline");
      } finally {
        await pipeline.release();
      }
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  });
}

Deno.test(`${REPO}: a variant the repo lacks is refused before downloading, naming those it has`, async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "",
    withoutFixture: true,
    extraFiles: await repoFiles(),
  });
  const cache = await Deno.makeTempDir({ prefix: "hf-published-" });
  const vars: Record<string, string> = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url, HOME: "/x" };
  try {
    await assert.rejects(
      resolveModel(REPO, (n) => vars[n], "fp32"),
      /holds no variant 'fp32' of webnn\/sdxl-turbo \(it has q4f16, qdq_q4f16\)/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("webnn/Z-Image-Turbo downloads its q4f16 graphs with their external data and the repo's tokenizer, not its helpers", async () => {
  const files = await folderFiles(
    new URL("../../fixtures/models/z-image-turbo-webnn-tiny", import.meta.url).pathname,
  );
  const tokenizer = await folderFiles(
    new URL("../../fixtures/models/z-image-turbo-tiny", import.meta.url).pathname,
    "tokenizer",
  );
  await using hub = await startFakeHub({
    repoId: "webnn/Z-Image-Turbo",
    fixture: "",
    withoutFixture: true,
    extraFiles: { ...files, ...tokenizer },
  });
  const cache = await Deno.makeTempDir({ prefix: "hf-published-" });
  const vars: Record<string, string> = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url, HOME: "/x" };
  try {
    const resolved = await resolveModel("webnn/Z-Image-Turbo", (n) => vars[n]);
    if (resolved.source !== "hub") throw new Error(`resolved from ${resolved.source}`);
    assert.deepEqual(resolved.plan.files.map((f) => f.path).sort(), [
      "onnx/text_encoder_model_q4f16.onnx",
      "onnx/text_encoder_model_q4f16.onnx_data",
      "onnx/transformer_model_q4f16.onnx",
      "onnx/transformer_model_q4f16.onnx_data",
      "onnx/vae_decoder_model_f16.onnx",
      "tokenizer/tokenizer.json",
      "tokenizer/tokenizer_config.json",
    ]);
    assert.deepEqual(resolved.plan.skipped.sort(), [
      "onnx/scheduler_step_model_f16.onnx",
      "onnx/vae_pre_process_model_f16.onnx",
    ]);
    const dir = await resolved.download();
    const pipeline = await loadPipeline(dir, { device: "cpu" });
    try {
      assert.equal(pipeline.family, "ZImagePipeline");
    } finally {
      await pipeline.release();
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
