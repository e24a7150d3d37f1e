/**
 * Models the server cannot trust, through the real server: NaN weights fail requests with a clear
 * 500 (never a black image with 200), and a config that contradicts the graphs fails the load.
 * Also the served name of a model folder given without --served-model-name.
 */
import assert from "node:assert/strict";
import { brokenModel, editConfig, nanWeights } from "../fixtures/broken_models.ts";
import { startServer, type TestServer } from "./test_server.ts";

const generate = (server: TestServer, body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ size: "64x64", num_inference_steps: 2, ...body }),
  });

async function metric(server: TestServer, line: RegExp): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const found = text.split("\n").find((l) => line.test(l));
  return found ? Number(found.split(" ").at(-1)) : NaN;
}

async function assertNonFinite(res: Response, stage: string): Promise<void> {
  const body = await res.json();
  assert.equal(res.status, 500, JSON.stringify(body));
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.equal(body.error.code, "non_finite_output");
  assert.equal(body.error.type, "server_error");
  assert.equal(body.detail, body.error.message);
  assert.match(body.error.message, new RegExp(`non-finite values .* ${stage}`));
}

Deno.test("NaN weights: each request is a 500 non_finite_output (not retried), counted by stage in /metrics", async () => {
  const nanVae = await brokenModel(
    "nan-vae-",
    (dir) => nanWeights(`${dir}/vae_decoder/model.onnx`),
  );
  const nanText = await brokenModel(
    "nan-text-",
    (dir) => nanWeights(`${dir}/text_encoder/model.onnx`),
  );
  const vae = await startServer(["--model", nanVae, "--device", "cpu"]);
  const text = await startServer(["--model", nanText, "--device", "cpu"]);
  try {
    const stages = /denoise_non_finite_outputs_total\{.*stage="(latents|pixels)"/;
    assert.equal(await metric(vae, stages), 0);
    // A broken decoder: the latents are fine, the pixels are not (they were a black image).
    await assertNonFinite(await generate(vae, { prompt: "a red cube" }), "decoded pixels");
    await assertNonFinite(await generate(vae, { prompt: "again", n: 2 }), "decoded pixels");
    assert.equal(await metric(vae, /denoise_non_finite_outputs_total\{.*stage="pixels"/), 2);
    assert.equal(await metric(vae, /denoise_non_finite_outputs_total\{.*stage="latents"/), 0);
    // A broken text encoder poisons the denoiser's latents; streams end in an error event.
    await assertNonFinite(await generate(text, { prompt: "a red cube" }), "denoised latents");
    const stream = await generate(text, { prompt: "x", stream: true });
    assert.equal(stream.status, 200);
    const events = await stream.text();
    assert.match(events, /"code":"non_finite_output"/);
    assert.doesNotMatch(events, /image_generation\.completed/);
    assert.equal(await metric(text, /denoise_non_finite_outputs_total\{.*stage="latents"/), 2);
    for (const server of [vae, text]) {
      assert.match(
        await (await fetch(`${server.url}/metrics`)).text(),
        /vllm:request_success_total\{.*finished_reason="error"\} 2/,
      );
      const health = await fetch(`${server.url}/health`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
    }
  } finally {
    await vae.stop();
    await text.stop();
    await Deno.remove(nanVae, { recursive: true });
    await Deno.remove(nanText, { recursive: true });
  }
});

Deno.test("--model DIR without --served-model-name is served as the folder's name; DIR as given is still accepted", async () => {
  const dir = await brokenModel("served-name-", () => Promise.resolve());
  const name = dir.split("/").at(-1)!;
  const server = await startServer(["--model", dir, "--device", "cpu"]);
  try {
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(models.data[0].id, name);
    assert.equal(models.data[0].root, name);
    for (const model of [name, dir]) {
      const res = await generate(server, { prompt: "x", model });
      const body = await res.text();
      assert.equal(res.status, 200, `${model}: ${body}`);
    }
    const other = await generate(server, { prompt: "x", model: "someone/else" });
    assert.equal(other.status, 400);
    const body = await other.json();
    assert.equal(body.error.code, "model_not_found");
    assert.equal(body.error.message.includes(dir), false, body.error.message);
    assert.match(server.output(), new RegExp(`listening on .* model=${name}`));
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a config that contradicts its graphs fails at load, naming both; --exit-on-load-failure exits 1 with it", async () => {
  // The UNet's config says 8 latent channels; its graph makes 4, and the VAE decodes 4.
  const dir = await brokenModel("mismatch-", (d) => editConfig(d, "unet", "in_channels", 8));
  const expected =
    /latent channels differ \(unet\/config\.json out_channels = 4, unet\/model\.onnx out_sample\[1\] = 4, vae_decoder\/config\.json latent_channels = 4, unet\/config\.json in_channels = 8\)/;
  try {
    const server = await startServer(["--model", dir, "--device", "cpu"], { waitReady: false });
    try {
      const deadline = Date.now() + 20_000;
      let health: { reason?: string } = {};
      while (!/failed/.test(health.reason ?? "") && Date.now() < deadline) {
        health = await (await fetch(`${server.url}/health`)).json();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(health.reason ?? "", expected);
      const res = await generate(server, { prompt: "x" });
      assert.equal(res.status, 503);
      assert.equal((await res.json()).error.code, "model_load_failed");
    } finally {
      await server.stop();
    }
    const exit = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("./main.ts", import.meta.url).pathname,
        ...["--model", dir, "--port", "0", "--device", "cpu", "--exit-on-load-failure"],
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(exit.code, 1);
    const log = new TextDecoder().decode(exit.stdout) + new TextDecoder().decode(exit.stderr);
    assert.match(log, /model failed to load: The model's parts do not fit together/);
    assert.match(log, expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
