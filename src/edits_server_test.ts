/**
 * `POST /v1/images/edits` and chat edits end to end: the real server on the embedded model (which
 * has a VAE encoder), driven as users drive it: curl multipart, the openai SDK, the JSON form
 * streamed, chat with an input image. The input is the model's own "a red circle on a blue
 * background"; edits ask for a green background.
 */
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import sharp from "sharp";
import { startServer } from "./test_server.ts";

const server = await startServer(["--device", "cpu"]);
Deno.test.afterAll(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0 });
const GREEN = "a red circle on a green background";

/** The model's own picture to edit (256x256, its default size). */
const input = Uint8Array.fromBase64(
  (await client.images.generate({ prompt: "a red circle on a blue background", seed: 42 } as never))
    .data![0].b64_json!,
);

/** RGB bytes of an encoded image. */
const rgb = async (bytes: Uint8Array) => new Uint8Array(await sharp(bytes).raw().toBuffer());

/** Mean of each channel over the pixels `inside(x, y)` of a 256-wide RGB image. */
function mean(data: Uint8Array, inside: (x: number, y: number) => boolean): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let i = 0; i < data.length / 3; i++) {
    if (!inside(i % 256, Math.floor(i / 256))) continue;
    for (let c = 0; c < 3; c++) sum[c] += data[i * 3 + c];
    n++;
  }
  return sum.map((s) => s / n);
}

/** Whether the background (the corners' 32x32 squares) is green. */
async function greenBackground(bytes: Uint8Array): Promise<boolean> {
  const corners = (x: number, y: number) => (x < 32 || x >= 224) && (y < 32 || y >= 224);
  const [r, g, b] = mean(await rgb(bytes), corners);
  return g > r + 50 && g > b + 50;
}

Deno.test({
  name: "edits server: curl multipart with a mask repaints the transparent half, keeps the rest",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/in.png`, input);
      const alpha = new Uint8Array(256 * 256 * 4);
      for (let i = 0; i < 256 * 256; i++) alpha[i * 4 + 3] = i % 256 < 128 ? 0 : 255;
      await sharp(alpha, { raw: { width: 256, height: 256, channels: 4 } }).png()
        .toFile(`${dir}/mask.png`);
      const curl = await new Deno.Command("curl", {
        args: [
          ...["-s", "-X", "POST", `${server.url}/v1/images/edits`],
          ...["-F", "image=@in.png", "-F", "mask=@mask.png", "-F", `prompt=${GREEN}`],
          ...["-F", "strength=1", "-F", "seed=1"],
        ],
        cwd: dir,
        stdout: "piped",
      }).output();
      const body = JSON.parse(new TextDecoder().decode(curl.stdout));
      assert.equal(body.size, "256x256");
      const [before, after] = [
        await rgb(input),
        await rgb(Uint8Array.fromBase64(body.data[0].b64_json)),
      ];
      const diff = (inside: (x: number) => boolean) => {
        let sum = 0, n = 0;
        for (let i = 0; i < before.length; i++) {
          if (inside(Math.floor(i / 3) % 256)) {
            [sum, n] = [sum + Math.abs(before[i] - after[i]), n + 1];
          }
        }
        return sum / n;
      };
      // Measured: the kept right half (16 px from the seam on) differs by 2.5 per channel on
      // average, the VAE's reconstruction error; the repainted left half by 76.
      assert.ok(diff((x) => x >= 144) < 8, `kept half changed by ${diff((x) => x >= 144)}`);
      assert.ok(diff((x) => x < 128) > 30, `edited half changed by only ${diff((x) => x < 128)}`);
      const [r, g, b] = mean(after, (x, y) => x < 16 && y > 224);
      assert.ok(g > r && g > b, `repainted corner is ${[r, g, b]}, not green`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "edits server: the openai SDK's images.edit turns the background green; image[] of two is a 400",
  sanitizeResources: false,
  async fn() {
    const file = () => toFile(input, "in.png", { type: "image/png" });
    const res = await client.images.edit({ image: await file(), prompt: GREEN, seed: 1 } as never);
    assert.equal(res.size, "256x256");
    assert.ok(await greenBackground(Uint8Array.fromBase64(res.data![0].b64_json!)));
    const error = await client.images.edit({ image: [await file(), await file()], prompt: GREEN })
      .then(() => undefined, (e) => e);
    assert.ok(error instanceof OpenAI.BadRequestError, String(error));
    assert.match(error.message, /At most 1 image is supported by this model/);
    // Too small a strength for the steps it names leaves nothing to run: the pipeline's 400.
    const none = await client.images.edit(
      { image: await file(), prompt: GREEN, strength: 0.01, num_inference_steps: 20 } as never,
    ).then(() => undefined, (e) => e);
    assert.ok(none instanceof OpenAI.BadRequestError, String(none));
    assert.match(none.message, /leaves no step to run/);
  },
});

Deno.test({
  name: "edits server: the JSON form, streamed: partial images then the completed edit",
  sanitizeResources: false,
  async fn() {
    const res = await fetch(`${server.url}/v1/images/edits`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        images: [{ image_url: `data:image/png;base64,${input.toBase64()}` }],
        prompt: GREEN,
        stream: true,
        partial_images: 2,
        seed: 1,
      }),
    });
    const events = (await res.text()).split("\n\n").filter(Boolean).map((block) =>
      JSON.parse(block.split("\n").find((l) => l.startsWith("data:"))!.slice(5))
    );
    assert.deepEqual(events.map((e) => e.type), [
      "image_edit.partial_image",
      "image_edit.partial_image",
      "image_edit.completed",
    ]);
    assert.ok(await greenBackground(Uint8Array.fromBase64(events[2].b64_json)));
  },
});

Deno.test({
  name: "edits server: chat with an input image edits it",
  sanitizeResources: false,
  async fn() {
    const completion = await client.chat.completions.create({
      messages: [{
        role: "user",
        content: [
          { type: "text", text: GREEN },
          { type: "image_url", image_url: { url: `data:image/png;base64,${input.toBase64()}` } },
        ],
      }],
      seed: 1,
    } as never);
    const [part] = completion.choices[0].message.content as unknown as {
      image_url: { url: string };
    }[];
    const png = Uint8Array.fromBase64(part.image_url.url.split(",")[1]);
    assert.ok(await greenBackground(png));
  },
});

Deno.test({
  name:
    "edits server: the flow-matching fixtures (Z-Image, Qwen-Image) take masked edits over HTTP",
  sanitizeResources: false,
  async fn() {
    const mask = new Uint8Array(
      await sharp({ create: { width: 64, height: 64, channels: 4, background: "#0000" } })
        .png().toBuffer(),
    );
    for (const name of ["z-image-turbo-tiny", "qwen-image-tiny"]) {
      const model = new URL(`../fixtures/models/${name}`, import.meta.url).pathname;
      const fixture = await startServer(["--model", model, "--device", "cpu"]);
      try {
        const models = await (await fetch(`${fixture.url}/v1/models`)).json();
        assert.equal(models.data[0].max_edit_images, 1, name);
        const scene = new Uint8Array(await sharp(input).resize(64, 64).png().toBuffer());
        const res = await fetch(`${fixture.url}/v1/images/edits`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            images: [{ image_url: `data:image/png;base64,${scene.toBase64()}` }],
            mask: { image_url: `data:image/png;base64,${mask.toBase64()}` },
            prompt: "x",
            num_inference_steps: 2,
            strength: 1,
          }),
        });
        const body = await res.json();
        assert.equal(res.status, 200, `${name}: ${JSON.stringify(body)}`);
        assert.equal(body.size, "64x64");
      } finally {
        await fixture.stop();
      }
    }
  },
});
