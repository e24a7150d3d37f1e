import assert from "node:assert/strict";
import { folderFiles, startFakeHub } from "../../fixtures/fake_hub.ts";
import { HubError, ModelNotFoundError } from "../errors.ts";
import { downloadSnapshot, hubSettings, planDownload } from "./hub_download.ts";
import { resolveModel } from "./resolve.ts";

const REPO = "Qwen/Qwen-Image";
const TOKEN = "hf_fake_token_for_tests";

/** An environment with an empty temporary cache (removed on dispose) and `endpoint` as the hub. */
async function sandbox(endpoint: string, extra: Record<string, string> = {}) {
  const cache = await Deno.makeTempDir({ prefix: "hf-download-" });
  const vars: Record<string, string> = {
    HF_HUB_CACHE: cache,
    HF_ENDPOINT: endpoint,
    HOME: "/nonexistent",
    ...extra,
  };
  return {
    cache,
    env: (n: string) => vars[n],
    [Symbol.asyncDispose]: () => Deno.remove(cache, { recursive: true }),
  };
}

Deno.test("resolveModel downloads the loader's files into huggingface_hub's cache layout", async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "qwen-image-tiny",
    extraFiles: {
      "README.md": new TextEncoder().encode("# Qwen-Image\n"),
      "transformer/diffusion_pytorch_model.safetensors": new Uint8Array(1000),
    },
  });
  await using box = await sandbox(hub.url);
  const resolved = await resolveModel(REPO, box.env);
  assert.equal(resolved.source, "hub");
  if (resolved.source !== "hub") return;
  assert.deepEqual(resolved.plan.skipped.sort(), [
    "README.md",
    "transformer/diffusion_pytorch_model.safetensors",
  ]);
  assert.equal(resolved.plan.files.at(-1)?.path, "model_index.json");
  assert.equal(hub.requests[0].path, "/api/models/Qwen/Qwen-Image/revision/main");
  const seen: number[] = [];
  const dir = await resolved.download({ onProgress: (p) => seen.push(p.bytes) });
  const repoDir = `${box.cache}/models--Qwen--Qwen-Image`;
  assert.equal(dir, `${repoDir}/snapshots/${hub.sha}`);
  assert.equal(await Deno.readTextFile(`${repoDir}/refs/main`), hub.sha);
  assert.equal(seen.at(-1), resolved.plan.totalBytes);
  assert.ok(seen.every((b, i) => i === 0 || b >= seen[i - 1]), "progress only grows");
  for (const file of resolved.plan.files) {
    const link = await Deno.readLink(`${dir}/${file.path}`);
    assert.ok(link.startsWith("../") && link.endsWith(`blobs/${file.etag}`), link);
    assert.deepEqual(await Deno.readFile(`${dir}/${file.path}`), hub.files.get(file.path));
  }
  await assert.rejects(Deno.stat(`${dir}/README.md`), Deno.errors.NotFound);
  // Once downloaded, the id resolves from the cache without asking the hub.
  const asked = hub.requests.length;
  assert.deepEqual(await resolveModel(REPO, box.env), { dir, source: "hf-cache", format: "onnx" });
  assert.equal(hub.requests.length, asked);
});

Deno.test("an interrupted download resumes from its .incomplete file with a range request", async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "qwen-image-tiny",
    interrupt: { path: "transformer/model.onnx_data", bytes: 20_000, how: "drop" },
  });
  await using box = await sandbox(hub.url);
  const settings = await hubSettings(box.env);
  const plan = await planDownload(REPO, box.cache, settings);
  await assert.rejects(
    downloadSnapshot(plan, settings),
    (e: Error) =>
      e instanceof HubError &&
      /transformer\/model\.onnx_data .* stopped at 20000 of/.test(e.message) &&
      /run again to resume/.test(e.message),
  );
  // Interrupted: model_index.json is not in place, so the cache does not count it as a model.
  await assert.rejects(Deno.stat(`${plan.snapshotDir}/model_index.json`));
  const size = hub.files.get("transformer/model.onnx_data")!.length;
  const blob = plan.files.find((f) => f.path === "transformer/model.onnx_data")!.etag;
  const before = hub.requests.length;
  await downloadSnapshot(plan, settings);
  const ranges = hub.requests.slice(before).filter((r) =>
    r.path.endsWith("/transformer/model.onnx_data") && r.range !== "bytes=0-0"
  ).map((r) => r.range);
  assert.deepEqual(ranges, [`bytes=20000-${size - 1}`]);
  assert.deepEqual(
    await Deno.readFile(`${plan.repoDir}/blobs/${blob}`),
    hub.files.get("transformer/model.onnx_data"),
  );
  assert.equal((await resolveModel(REPO, box.env)).source, "hf-cache");
});

Deno.test("a stalled transfer is abandoned after HF_HUB_DOWNLOAD_TIMEOUT and resumes later", async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "qwen-image-tiny",
    interrupt: { path: "text_encoder/model.onnx", bytes: 5_000, how: "stall" },
  });
  await using box = await sandbox(hub.url, { HF_HUB_DOWNLOAD_TIMEOUT: "0.5" });
  const settings = await hubSettings(box.env);
  const plan = await planDownload(REPO, box.cache, settings);
  await assert.rejects(
    downloadSnapshot(plan, settings),
    /text_encoder\/model\.onnx .* stopped at 5000 of \d+ bytes \(no data for 0\.5 s\)/,
  );
  assert.equal(await downloadSnapshot(plan, settings), plan.snapshotDir);
});

Deno.test("two downloads into one cache at once take turns and both succeed", async () => {
  await using hub = await startFakeHub({ repoId: REPO, fixture: "qwen-image-tiny" });
  await using box = await sandbox(hub.url);
  const settings = await hubSettings(box.env);
  const plan = await planDownload(REPO, box.cache, settings);
  await Promise.all([downloadSnapshot(plan, settings), downloadSnapshot(plan, settings)]);
  for (const file of plan.files) {
    assert.deepEqual(
      await Deno.readFile(`${plan.snapshotDir}/${file.path}`),
      hub.files.get(file.path),
    );
  }
  const fetched = hub.requests.filter((r) => r.path.includes("/resolve/") && r.range === null);
  assert.equal(fetched.length, plan.files.length, "each file fetched once");
});

Deno.test("an unwritable cache is a HubError that says to set HF_HUB_CACHE", async () => {
  await using hub = await startFakeHub({ repoId: REPO, fixture: "qwen-image-tiny" });
  await using box = await sandbox(hub.url);
  const settings = await hubSettings(box.env);
  // A file where the cache folder should be: unwritable for root too.
  const blocked = `${box.cache}/not-a-folder`;
  await Deno.writeTextFile(blocked, "");
  const plan = await planDownload(REPO, blocked, settings);
  await assert.rejects(
    downloadSnapshot(plan, settings),
    (e: Error) =>
      e instanceof HubError && /cannot write to the hub cache/.test(e.message) &&
      /set HF_HUB_CACHE to a writable folder/.test(e.message),
  );
});

Deno.test("a gated repo needs HF_TOKEN, which is sent on every request", async () => {
  await using hub = await startFakeHub({ repoId: REPO, fixture: "qwen-image-tiny", token: TOKEN });
  await using anonymous = await sandbox(hub.url);
  await using authed = await sandbox(hub.url, { HF_TOKEN: TOKEN });
  await assert.rejects(
    resolveModel(REPO, anonymous.env),
    (e: Error) =>
      e instanceof ModelNotFoundError &&
      /refused access to 'Qwen\/Qwen-Image' \(401/.test(e.message) &&
      /Set HF_TOKEN/.test(e.message),
  );
  const before = hub.requests.length;
  const resolved = await resolveModel(REPO, authed.env);
  assert.equal(resolved.source, "hub");
  if (resolved.source === "hub") await resolved.download();
  const authedRequests = hub.requests.slice(before);
  assert.ok(authedRequests.some((r) => r.path.includes("/resolve/")), "files were fetched");
  assert.ok(authedRequests.every((r) => r.authorization === `Bearer ${TOKEN}`));
});

Deno.test("a repo with neither an ONNX export nor .safetensors (pickles only) is refused before anything downloads", async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "qwen-image-tiny",
    withoutFixture: true,
    extraFiles: {
      "model_index.json": new TextEncoder().encode('{"_class_name":"QwenImagePipeline"}'),
      "transformer/config.json": new TextEncoder().encode("{}"),
      "transformer/diffusion_pytorch_model.bin": new Uint8Array(10),
    },
  });
  await using box = await sandbox(hub.url);
  await assert.rejects(
    resolveModel(REPO, box.env),
    (e: Error) =>
      /holds no diffusers ONNX export .* and no diffusers folder of \.safetensors .*diffusion_pytorch_model\.bin.*pickled PyTorch weights are refused/
        .test(e.message),
  );
  assert.ok(hub.requests.every((r) => r.path.startsWith("/api/")), "no file was fetched");
});

Deno.test("a diffusers repo of .safetensors plans one weights variant, configs and tokenizer, to convert", async () => {
  const sd15 = await folderFiles(
    new URL("../../fixtures/reference/data/sd15", import.meta.url).pathname,
  );
  await using hub = await startFakeHub({
    repoId: "org/sd15",
    fixture: "",
    withoutFixture: true,
    extraFiles: {
      ...sd15,
      "README.md": new TextEncoder().encode("# sd15\n"),
      // Another variant of a component that has the default one, a variant-only component,
      // pickles beside them, and a component the server does not run.
      "unet/diffusion_pytorch_model.fp16.safetensors": new Uint8Array(8),
      "unet/diffusion_pytorch_model.bin": new Uint8Array(8),
      "text_encoder/model.bf16.safetensors": new Uint8Array(8),
      "vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors": new Uint8Array(8),
      "safety_checker/model.safetensors": new Uint8Array(8),
      "safety_checker/config.json": new TextEncoder().encode("{}"),
    },
  });
  await using box = await sandbox(hub.url);
  const resolved = await resolveModel("org/sd15", box.env);
  assert.equal(resolved.source, "hub");
  if (resolved.source !== "hub") return;
  assert.equal(resolved.format, "safetensors");
  assert.equal(resolved.plan.format, "safetensors");
  assert.deepEqual(resolved.plan.files.map((f) => f.path).sort(), Object.keys(sd15).sort());
  assert.deepEqual(resolved.plan.skipped.sort(), [
    "README.md",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "text_encoder/model.bf16.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
  ]);
});

Deno.test("a component with only a variant's shards downloads those shards", async () => {
  const shard = (i: number) =>
    `transformer/diffusion_pytorch_model.fp16-0000${i}-of-00002.safetensors`;
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "",
    withoutFixture: true,
    extraFiles: {
      "model_index.json": new TextEncoder().encode('{"_class_name":"ZImagePipeline"}'),
      "transformer/config.json": new TextEncoder().encode("{}"),
      "transformer/diffusion_pytorch_model.safetensors.index.fp16.json": new TextEncoder().encode(
        "{}",
      ),
      [shard(1)]: new Uint8Array(8),
      [shard(2)]: new Uint8Array(8),
      "transformer/diffusion_pytorch_model.bf16.safetensors": new Uint8Array(8),
    },
  });
  await using box = await sandbox(hub.url);
  const plan = await planDownload(REPO, box.cache, await hubSettings(box.env));
  assert.deepEqual(plan.skipped, ["transformer/diffusion_pytorch_model.bf16.safetensors"]);
  assert.ok(plan.files.some((f) => f.path === shard(2)));
});

Deno.test("a corrupted file fails its checksum and its partial file is deleted", async () => {
  await using hub = await startFakeHub({
    repoId: REPO,
    fixture: "qwen-image-tiny",
    corrupt: "text_encoder/model.onnx",
  });
  await using box = await sandbox(hub.url);
  const settings = await hubSettings(box.env);
  const plan = await planDownload(REPO, box.cache, settings);
  await assert.rejects(
    downloadSnapshot(plan, settings),
    /text_encoder\/model\.onnx of 'Qwen\/Qwen-Image' failed its checksum/,
  );
  const leftovers = [...Deno.readDirSync(`${plan.repoDir}/blobs`)].map((e) => e.name);
  assert.ok(!leftovers.some((n) => n.endsWith(".incomplete")), leftovers.join());
});

Deno.test("an unreachable hub or HF_HUB_OFFLINE fails within seconds, saying where it looked", async () => {
  await using closed = await sandbox("http://127.0.0.1:9");
  await using offline = await sandbox("http://127.0.0.1:9", { HF_HUB_OFFLINE: "1" });
  const started = performance.now();
  await assert.rejects(
    resolveModel(REPO, closed.env),
    (e: Error) =>
      e instanceof ModelNotFoundError &&
      e.message.includes(`${closed.cache}/models--Qwen--Qwen-Image`) &&
      /the hub at http:\/\/127\.0\.0\.1:9 could not be reached/.test(e.message) &&
      /--model DIR/.test(e.message),
  );
  await assert.rejects(
    resolveModel(REPO, offline.env),
    /HF_HUB_OFFLINE is set, so the hub was not asked/,
  );
  assert.ok(performance.now() - started < 10_000);
  await assert.rejects(
    resolveModel(REPO, (n) => n === "HF_TOKEN" ? "not-a-token" : closed.env(n)),
    /HF_TOKEN is not a Hugging Face access token/,
  );
});

Deno.test("a hub that accepts connections but never answers times out after HF_HUB_ETAG_TIMEOUT", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })().catch(() => {});
  await using box = await sandbox(`http://127.0.0.1:${silent.addr.port}`, {
    HF_HUB_ETAG_TIMEOUT: "0.3",
  });
  const started = performance.now();
  await assert.rejects(
    resolveModel(REPO, box.env),
    /could not be reached \(no answer within 0\.3 s \(HF_HUB_ETAG_TIMEOUT\)\)/,
  );
  assert.ok(performance.now() - started < 5_000);
  held.forEach((c) => c.close());
  silent.close();
  await accepting;
});

Deno.test("hubSettings reads the endpoint, the token file and the timeouts like huggingface_hub", async () => {
  const home = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${home}/token`, `${TOKEN}\n`);
    const vars: Record<string, string> = {
      HF_HOME: home,
      HF_ENDPOINT: "https://mirror.example/",
      HF_HUB_ETAG_TIMEOUT: "3",
    };
    assert.deepEqual(await hubSettings((n) => vars[n]), {
      endpoint: "https://mirror.example",
      token: TOKEN,
      offline: false,
      metadataTimeoutS: 3,
      stallTimeoutS: 60,
    });
    vars.HF_TOKEN = "hf_from_env";
    assert.equal((await hubSettings((n) => vars[n])).token, "hf_from_env");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
