import assert from "node:assert/strict";
import OpenAI from "openai";
import { Engine } from "./engine/engine.ts";
import { toApiError } from "./error_handler.ts";
import { ENGINE_NOT_READY } from "./errors.ts";
import { fixtureCache } from "../fixtures/hf_cache.ts";
import { startFakeHub } from "../fixtures/fake_hub.ts";
import { startServer, startUnloadableServer } from "./test_server.ts";

/** Runs the conformance suite as a user would and asserts it passes. */
async function assertConformance(baseUrl: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../conformance/main.ts", import.meta.url).pathname,
      "--base-url",
      baseUrl,
    ],
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stdout));
}

Deno.test("503 with the documented detail while no engine is ready (model failed to load)", async () => {
  const server = await startUnloadableServer();
  try {
    let health: Response;
    do {
      health = await fetch(`${server.url}/health`);
      if (health.status === 503 && /failed/.test(JSON.stringify(await health.clone().json()))) {
        break;
      }
      await health.body?.cancel();
      await new Promise((r) => setTimeout(r, 100));
    } while (true);
    const h = await health.json();
    assert.equal(h.status, "unhealthy");
    assert.match(
      h.reason,
      /Model failed to load: Cannot load .*tokenizer_config\.json: file not found/,
    );
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "test" }),
    });
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.detail, ENGINE_NOT_READY);
    assert.equal(body.error.message, ENGINE_NOT_READY);
    const chat = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(chat.status, 503);
    await chat.body?.cancel();
  } finally {
    await server.stop();
  }
});

Deno.test("an engine that is still loading answers 503", () => {
  const engine = new Engine({ maxQueue: 1, maxBatchSize: 1, batchWaitMs: 0 });
  engine.start(() => new Promise(() => {}), { device: "cpu" });
  assert.throws(() => engine.model(), (e: Error) => toApiError(e).message === ENGINE_NOT_READY);
});

Deno.test("--api-key requires a Bearer token on /v1/*; /health stays open", async () => {
  const server = await startServer(["--device", "cpu", "--api-key", "sekret"]);
  try {
    const denied = await fetch(`${server.url}/v1/models`);
    assert.equal(denied.status, 401);
    assert.equal((await denied.json()).error.code, "invalid_api_key");
    const ok = await fetch(`${server.url}/v1/models`, {
      headers: { authorization: "Bearer sekret" },
    });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const client = new OpenAI({ apiKey: "wrong", baseURL: `${server.url}/v1`, maxRetries: 0 });
    await assert.rejects(() => client.models.list(), OpenAI.AuthenticationError);
  } finally {
    await server.stop();
  }
});

Deno.test("the CLI rejects bad flags in one line and a non-zero exit", async () => {
  for (
    const [args, message] of [
      [["--device", "tpu"], /--device must be one of auto, webgpu, wasm, cpu, got "tpu"/],
      [["--port", "x"], /--port must be an integer 0–65535, got "x"/],
      [["--bogus"], /Unknown option '--bogus'/],
    ] as const
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2, args.join(" "));
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, message);
    assert.match(stderr, /^error: .*\nRun with --help for the options\.\n$/);
  }
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname, "--help"],
    stdout: "piped",
  }).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /--max-image-pixels/);
});

Deno.test("--model ORG/NAME serves from a temporary HF cache with the registry's defaults", async () => {
  const cache = await fixtureCache("stabilityai/sd-turbo");
  const server = await startServer(["--model", "stabilityai/sd-turbo", "--device", "cpu"], {
    env: { HF_HUB_CACHE: cache },
  });
  try {
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(models.data[0].id, "stabilityai/sd-turbo");
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a red cat", model: "stabilityai/sd-turbo" }),
    });
    const body = await res.json();
    assert.equal(res.status, 200);
    assert.equal(body.size, "512x512"); // registry default for stabilityai/sd-turbo
    assert.match(server.output(), /Hugging Face cache/);
  } finally {
    await server.stop();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("--model of an uncached id exits non-zero within seconds, saying where it looked", async () => {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./main.ts", import.meta.url).pathname,
      "--model",
      "Qwen/Qwen-Image",
    ],
    // A closed local port stands for an offline machine, whatever CI's network allows.
    env: { HF_HUB_CACHE: "/tmp/denoise-empty-cache", HF_ENDPOINT: "http://127.0.0.1:9" },
    stderr: "piped",
  }).output();
  assert.equal(out.code, 1);
  assert.ok(performance.now() - started < 10_000);
  const err = new TextDecoder().decode(out.stderr);
  assert.match(
    err,
    /Model 'Qwen\/Qwen-Image' was not found\. Looked in: .*\/tmp\/denoise-empty-cache\/models--Qwen--Qwen-Image/,
  );
  assert.match(err, /the hub at http:\/\/127\.0\.0\.1:9 could not be reached/);
  assert.match(err, /--model DIR/);
});

Deno.test("--model Qwen/Qwen-Image downloads from the hub with progress, resumes after a stall, then serves", async () => {
  const hub = await startFakeHub({
    repoId: "Qwen/Qwen-Image",
    fixture: "qwen-image-tiny",
    interrupt: { path: "transformer/model.onnx_data", bytes: 10_000, how: "stall" },
  });
  const cache = await Deno.makeTempDir({ prefix: "hf-serve-download-" });
  const env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url, HF_HUB_DOWNLOAD_TIMEOUT: "2" };
  const args = ["--model", "Qwen/Qwen-Image", "--device", "cpu"];
  try {
    const stalled = await startServer(args, { waitReady: false, env });
    try {
      const health = await fetch(`${stalled.url}/health`);
      assert.equal(health.status, 503);
      assert.match(
        (await health.json()).reason,
        /^Model is loading: downloading, [\d.]+ k?B of [\d.]+ kB$/,
      );
      let reason = "";
      for (let i = 0; i < 100 && !/failed/.test(reason); i++) {
        await new Promise((r) => setTimeout(r, 100));
        reason = (await (await fetch(`${stalled.url}/health`)).json()).reason;
      }
      assert.match(reason, /stopped at 10000 of .* \(no data for 2 s\); run again to resume/);
      assert.match(
        stalled.output(),
        /Qwen\/Qwen-Image: downloading 13 files \(160\.0 kB\)/,
      );
    } finally {
      await stalled.stop();
    }
    const resumed = await startServer(args, { env });
    try {
      const res = await fetch(`${resumed.url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "a red cat", size: "256x256", seed: 1 }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal((await res.json()).data.length, 1);
      // Progress lines (stderr is not a terminal here) end at 100 %.
      assert.match(resumed.output(), /Qwen\/Qwen-Image \[#{24}\] 100% /);
      const ranges = hub.requests.filter((r) => r.path.endsWith("/transformer/model.onnx_data"))
        .map((r) => r.range);
      assert.ok(ranges.some((r) => r?.startsWith("bytes=10000-")), ranges.join());
    } finally {
      await resumed.stop();
    }
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("deno task serve --model Qwen/Qwen-Image serves the cached tiny export; conformance passes", async () => {
  const cache = await fixtureCache("Qwen/Qwen-Image", "qwen-image-tiny");
  const server = await startServer(["--model", "Qwen/Qwen-Image", "--device", "cpu"], {
    env: { HF_HUB_CACHE: cache },
  });
  try {
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a red cat", size: "256x256", seed: 1 }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.size, "256x256");
    const odd = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", size: "264x256" }),
    });
    assert.equal(odd.status, 400);
    assert.match((await odd.json()).detail, /multiples of 16/);
    // The registry's limit for Qwen-Image admits vLLM-Omni's 1664×928 test size.
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(models.data[0].max_image_pixels, 2048 * 2048);
    const wide = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", size: "1664x928", num_inference_steps: 1 }),
    });
    assert.equal(wide.status, 200);
    assert.equal((await wide.json()).size, "1664x928");
    await assertConformance(server.url);
  } finally {
    await server.stop();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("deno task serve --model Tongyi-MAI/Z-Image-Turbo serves the cached tiny export as its card says (at most 16 steps, guidance 0); conformance passes", async () => {
  const cache = await fixtureCache("Tongyi-MAI/Z-Image-Turbo", "z-image-turbo-tiny");
  const server = await startServer(["--model", "Tongyi-MAI/Z-Image-Turbo", "--device", "cpu"], {
    env: { HF_HUB_CACHE: cache },
  });
  try {
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(models.data[0].id, "Tongyi-MAI/Z-Image-Turbo");
    assert.deepEqual(models.data[0].defaults, {
      size: "1024x1024",
      num_inference_steps: 8,
      guidance_scale: 0,
    });
    assert.equal(models.data[0].size_multiple, 16);
    const image = (extra: Record<string, unknown>) =>
      postImage(server.url, { prompt: "a red cat", size: "64x64", seed: 5, ...extra });
    // More than 16 steps run 16; guidance is replaced by 0 (guidance-distilled); the log says so.
    const asked = await image({ guidance_scale: 3, num_inference_steps: 17 });
    const card = await image({ num_inference_steps: 16 });
    assert.equal(asked.status, 200);
    assert.equal(asked.body.data[0].b64_json, card.body.data[0].b64_json);
    assert.match(server.output(), /num_inference_steps 17 lowered to 16/);
    assert.match(
      server.output(),
      /guidance_scale 3 ignored: Tongyi-MAI\/Z-Image-Turbo is guidance-distilled and runs at 0/,
    );
    await assertConformance(server.url);
  } finally {
    await server.stop();
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("a Z-Image folder without a model card takes diffusers' cfg_truncation and cfg_normalization per request, on both endpoints", async () => {
  const server = await startServer([
    "--model",
    new URL("../fixtures/models/z-image-turbo-tiny", import.meta.url).pathname,
    "--device",
    "cpu",
  ]);
  try {
    const image = (extra: Record<string, unknown>) =>
      postImage(server.url, {
        prompt: "a red cat",
        negative_prompt: "blurry",
        size: "64x64",
        seed: 5,
        guidance_scale: 3,
        num_inference_steps: 4,
        ...extra,
      });
    const full = await image({});
    const truncated = await image({ cfg_truncation: 0 });
    const normalised = await image({ cfg_normalization: true });
    assert.equal(truncated.status, 200);
    assert.notEqual(truncated.body.data[0].b64_json, full.body.data[0].b64_json);
    assert.notEqual(normalised.body.data[0].b64_json, full.body.data[0].b64_json);
    assert.equal(
      (await image({ cfg_normalization: 1 })).body.data[0].b64_json,
      normalised.body.data[0].b64_json,
    );
    const outOfRange = await image({ cfg_truncation: 2 });
    assert.equal(outOfRange.status, 422);
    assert.deepEqual(outOfRange.body.detail[0].loc, ["body", "cfg_truncation"]);
    const chat = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [{ role: "user", content: "a red cat" }],
        extra_body: {
          size: "64x64",
          num_inference_steps: 4,
          guidance_scale: 3,
          cfg_truncation: 0.5,
          cfg_normalization: 1.2,
        },
      }),
    });
    assert.equal(chat.status, 200);
    await chat.body?.cancel();
  } finally {
    await server.stop();
  }
});

/** POSTs a generation request; the status and the JSON body. */
async function postImage(
  baseUrl: string,
  body: Record<string, unknown>,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${baseUrl}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("no XDG_RUNTIME_DIR noise at start when the environment has none (--device auto)", async () => {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => k !== "XDG_RUNTIME_DIR"),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./main.ts", import.meta.url).pathname, "--port", "0"],
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const pumps = [child.stdout, child.stderr].map(async (stream) => {
    for await (const chunk of stream) log += decoder.decode(chunk);
  });
  const deadline = Date.now() + 60_000;
  while (!/model ready|failed to load/.test(log) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGTERM");
  await child.status;
  await Promise.all(pumps);
  assert.match(log, /model ready/);
  assert.doesNotMatch(log, /XDG_RUNTIME_DIR/);
});
