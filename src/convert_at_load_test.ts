/**
 * `--model` of PyTorch weights, served as a user serves it: converted on the first start (with
 * `/health` saying how far), reused by the next, and a conversion that fails is a 503 or exit 1
 * that leaves nothing in the cache.
 */
import assert from "node:assert/strict";
import { folderFiles, startFakeHub } from "../fixtures/fake_hub.ts";
import {
  imageDifference,
  REFERENCE_DATA,
  referenceCalls,
  requestImage,
} from "../fixtures/reference/served.ts";
import { startServer } from "./test_server.ts";

const DATA = REFERENCE_DATA.replace(/\/$/, "");

/** The largest difference, in 8-bit steps, between a served PNG and diffusers' image. */
async function differenceFromDiffusers(url: string): Promise<number> {
  const [call] = await referenceCalls("sd15");
  const png = await requestImage(url, call.fields);
  return imageDifference(png.data, call.image).worst;
}

Deno.test("a hub repo of .safetensors is downloaded and converted on the first start, with /health saying how far, and reused by the next", async () => {
  await using hub = await startFakeHub({
    repoId: "org/sd15",
    fixture: "",
    withoutFixture: true,
    extraFiles: {
      ...await folderFiles(`${DATA}/sd15`),
      "unet/diffusion_pytorch_model.bin": new Uint8Array(64),
    },
  });
  const tmp = await Deno.makeTempDir({ prefix: "convert-at-load-" });
  const env = {
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: `${tmp}/hf`,
    DENOISE_CACHE: `${tmp}/denoise`,
    HOME: "/nonexistent",
  };
  const args = ["--model", "org/sd15", "--device", "cpu"];
  try {
    let started = performance.now();
    const first = await startServer(args, { env, waitReady: false });
    const reasons = new Set<string>();
    try {
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        const res = await fetch(`${first.url}/health`);
        const body = await res.json();
        if (res.status === 200) break;
        reasons.add(body.reason);
        assert.doesNotMatch(body.reason, /failed/, first.output());
        await new Promise((r) => setTimeout(r, 5));
      }
      const firstS = (performance.now() - started) / 1000;
      assert.ok(
        [...reasons].some((r) => /^Model is loading: converting, [\d.]+ k?B of 1\.1 MB$/.test(r)),
        [...reasons].join("\n"),
      );
      assert.match(
        first.output(),
        /converted into .*\/denoise\/converted\/org--sd15-fp32-[0-9a-f]{16}/,
      );
      assert.ok((await differenceFromDiffusers(first.url)) <= 2);
      console.log(`first start (download + convert) to healthy: ${firstS.toFixed(2)} s`);
    } finally {
      await first.stop();
    }
    const asked = hub.requests.length;
    started = performance.now();
    const second = await startServer(args, { env });
    try {
      const secondS = (performance.now() - started) / 1000;
      console.log(`second start (cached) to healthy: ${secondS.toFixed(2)} s`);
      assert.match(second.output(), /Hugging Face cache .*reusing the converted model/s);
      assert.doesNotMatch(second.output(), /converting/);
      assert.equal(hub.requests.length, asked, "the hub was not asked again");
      assert.ok((await differenceFromDiffusers(second.url)) <= 2);
    } finally {
      await second.stop();
    }
    assert.deepEqual(
      [...Deno.readDirSync(`${tmp}/denoise/converted`)].map((e) => e.name).sort().length,
      2, // .locks and the model
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a conversion that fails is a 503 model_load_failed (exit 1 with --exit-on-load-failure) and leaves nothing in the cache", async () => {
  const cache = await Deno.makeTempDir({ prefix: "convert-at-load-" });
  // An SD 1.x checkpoint with an SDXL folder's configs: the converter refuses it.
  const args = [
    ...["--model", `${DATA}/sd15.safetensors`, "--model-config", `${DATA}/sdxl`],
    ...["--device", "cpu"],
  ];
  const env = { DENOISE_CACHE: cache };
  const expected = /a single-file SD 1\.x checkpoint needs a StableDiffusionPipeline folder/;
  try {
    const server = await startServer(args, { env, waitReady: false });
    try {
      let health: { reason?: string } = {};
      for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
        health = await (await fetch(`${server.url}/health`)).json();
        if (/failed/.test(health.reason ?? "")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(health.reason ?? "", expected);
      const res = await fetch(`${server.url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "x" }),
      });
      assert.equal(res.status, 503);
      assert.equal((await res.json()).error.code, "model_load_failed");
    } finally {
      await server.stop();
    }
    const exit = await new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "--allow-all", new URL("./main.ts", import.meta.url).pathname],
        ...args,
        ...["--port", "0", "--exit-on-load-failure"],
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(exit.code, 1);
    assert.match(
      new TextDecoder().decode(exit.stderr) + new TextDecoder().decode(exit.stdout),
      expected,
    );
    assert.deepEqual([...Deno.readDirSync(`${cache}/converted`)].map((e) => e.name), [".locks"]);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
