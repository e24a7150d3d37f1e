/**
 * The published exports' replicas (fixtures/models/sd-turbo-{webnn,ort-web,ort-cuda}-tiny,
 * sdxl-turbo-webnn-tiny)
 * served by the real server through both image endpoints with the openai client, as a user
 * would run `deno task serve --model <the downloaded folder>`.
 */
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import sharp from "sharp";
import { webGpuForTests } from "../compute/backends/webgpu_for_tests.ts";
import { folderFiles, startFakeHub } from "../fixtures/fake_hub.ts";
import { startServer } from "./test_server.ts";

const webgpu = await webGpuForTests();

const fixture = (name: string) => new URL(`../fixtures/models/${name}`, import.meta.url).pathname;

/** A 512² PNG to edit. */
const picture = await sharp({
  create: { width: 512, height: 512, channels: 3, background: { r: 200, g: 40, b: 40 } },
}).png().toBuffer();

/** Asks the chat endpoint for an image (vLLM-Omni's image chat) and returns its width. */
async function chatImageWidth(client: OpenAI, extra: Record<string, unknown> = {}) {
  const res = await client.chat.completions.create({
    messages: [{ role: "user", content: "a red cube" }],
    extra_body: { seed: 3, ...extra },
  } as never);
  // deno-lint-ignore no-explicit-any
  const url: string = (res.choices[0].message.content as any)[0].image_url.url;
  assert.match(url, /^data:image\/png;base64,/);
  return (await sharp(Uint8Array.fromBase64(url.split(",")[1])).metadata()).width;
}

const CASES = [
  ["sd-turbo-webnn-tiny", false],
  ["sd-turbo-ort-web-tiny", false],
  ["sd-turbo-ort-cuda-tiny", true],
  ["sdxl-turbo-webnn-tiny", false],
] as const;

for (const device of ["cpu", "webgpu"] as const) {
  for (const [name, edits] of CASES) {
    serve(name, edits, device);
  }
}

function serve(name: string, edits: boolean, device: "cpu" | "webgpu") {
  const ignored = device === "webgpu" ? webgpu.ignored : undefined;
  Deno.test({
    name: `${name} served on ${device}: generations and chat draw 512² images; edits ${
      edits ? "draw too" : "are refused clearly (the export has no VAE encoder)"
    }${ignored ? ` (ignored: ${ignored})` : ""}`,
    ignore: ignored !== undefined,
    sanitizeResources: false,
    async fn() {
      const server = await startServer(["--model", fixture(name), "--device", device]);
      try {
        const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
        const generated = await client.images.generate(
          { prompt: "a red cube", seed: 1, response_format: "b64_json" } as never,
        );
        const png = Uint8Array.fromBase64(generated.data![0].b64_json!);
        assert.deepEqual(
          [(await sharp(png).metadata()).width, (await sharp(png).metadata()).height],
          [512, 512],
        );
        assert.equal(await chatImageWidth(client), 512);
        const edit = client.images.edit({
          image: await toFile(picture, "in.png", { type: "image/png" }),
          prompt: "a blue cube",
          response_format: "b64_json",
          seed: 2,
          // SD-Turbo's image-to-image as its model card runs it: 2 steps at strength 0.5.
          num_inference_steps: 2,
          strength: 0.5,
        } as never);
        if (edits) {
          const out = Uint8Array.fromBase64((await edit).data![0].b64_json!);
          assert.equal((await sharp(out).metadata()).width, 512);
        } else {
          await assert.rejects(
            edit,
            (e: unknown) =>
              e instanceof OpenAI.BadRequestError && /cannot edit images/.test(e.message),
          );
        }
        if (name === "sd-turbo-webnn-tiny") {
          // Static graphs: another size is a 400 naming the one they take.
          await assert.rejects(
            client.images.generate({ prompt: "x", size: "256x256" }),
            (e: unknown) =>
              e instanceof OpenAI.BadRequestError && e.param === "size" &&
              /512x512.*\[1,4,64,64\]/.test(e.message),
          );
        }
      } finally {
        await server.stop();
      }
    },
  });
}

Deno.test({
  name:
    "--model webnn/sdxl-turbo from a hub: only the default variant is downloaded, the log says which, and it serves",
  sanitizeResources: false,
  async fn() {
    const files = await folderFiles(fixture("sdxl-turbo-webnn-tiny"));
    for (const [path, bytes] of Object.entries(files)) {
      if (path.endsWith("_q4f16.onnx")) files[path.replace("_q4f16", "_qdq_q4f16")] = bytes;
    }
    await using hub = await startFakeHub({
      repoId: "webnn/sdxl-turbo",
      fixture: "",
      withoutFixture: true,
      extraFiles: files,
    });
    const cache = await Deno.makeTempDir({ prefix: "hf-published-" });
    try {
      const server = await startServer(["--model", "webnn/sdxl-turbo", "--device", "cpu"], {
        env: { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url, HOME: cache },
      });
      try {
        assert.match(
          server.output(),
          /downloading 4 files .*webnn\/sdxl-turbo's q4f16 variant \(the default; choose with --variant; the repo has q4f16, qdq_q4f16\)/,
        );
        const res = await fetch(`${server.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: "a red cube", seed: 1 }),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

for (const device of ["cpu", "webgpu"] as const) {
  const ignored = device === "webgpu" ? webgpu.ignored : undefined;
  Deno.test({
    name:
      `z-image-turbo-webnn-tiny (with a tokenizer added) served on ${device}: generations and chat draw images; edits are refused clearly${
        ignored ? ` (ignored: ${ignored})` : ""
      }`,
    ignore: ignored !== undefined,
    sanitizeResources: false,
    async fn() {
      const dir = await Deno.makeTempDir();
      await Deno.symlink(`${fixture("z-image-turbo-webnn-tiny")}/onnx`, `${dir}/onnx`);
      await Deno.symlink(`${fixture("z-image-turbo-tiny")}/tokenizer`, `${dir}/tokenizer`);
      try {
        const server = await startServer(["--model", dir, "--device", device]);
        try {
          const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
          const generated = await client.images.generate({
            prompt: "a red cube",
            size: "128x128",
            n: 2,
            response_format: "b64_json",
            seed: 1,
          } as never);
          assert.equal(generated.data!.length, 2);
          const png = Uint8Array.fromBase64(generated.data![0].b64_json!);
          assert.equal((await sharp(png).metadata()).width, 128);
          assert.equal(await chatImageWidth(client, { size: "128x128" }), 128);
          await assert.rejects(
            client.images.edit({
              image: await toFile(picture, "in.png", { type: "image/png" }),
              prompt: "a blue cube",
              size: "512x512",
            } as never),
            (e: unknown) =>
              e instanceof OpenAI.BadRequestError && /cannot edit images/.test(e.message),
          );
        } finally {
          await server.stop();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
