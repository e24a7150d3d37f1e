import assert from "node:assert/strict";
import { loadPipeline } from "../load.ts";
import type { GenerateOptions, Pipeline, RgbImage } from "./pipeline.ts";

const FIXTURES = new URL("../../fixtures/models/", import.meta.url).pathname;
const [W, H] = [32, 64];

/** A deterministic source image. */
function sourceImage(): RgbImage {
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 7) * 11) % 256;
  return { width: W, height: H, data };
}

/** Bytes of pixel rows `from`–`to` (exclusive). */
const rows = (image: RgbImage, from: number, to: number) =>
  image.data.subarray(from * W * 3, to * W * 3);

for (
  const [family, dir, extra] of [
    ["Z-Image", "z-image-turbo-tiny", {}],
    ["Qwen-Image", "qwen-image-tiny", { trueCfgScale: 1 }],
  ] as const
) {
  Deno.test(`${family} fixture edits: flow-rounded steps from the scaled-noise image, batches, inpainting keeps the unmasked region`, async () => {
    const p: Pipeline = await loadPipeline(`${FIXTURES}${dir}`, { device: "cpu" });
    try {
      assert.equal(p.maxEditImages, 1);
      const image = sourceImage();
      const base = { ...extra, width: W, height: H, steps: 4, seed: 42 };
      const timesteps: number[] = [];
      const full: number[] = [];
      await p.generate({ ...base, prompt: "a red cat", onStep: (s) => full.push(s.timestep) });
      const a = await p.generate({
        ...base,
        prompt: "a red cat",
        edit: { image, strength: 0.6 },
        onStep: (s) => timesteps.push(s.timestep),
      });
      // Flow rounding: t_start = int(4 − 2.4) = 1, so the last 3 of the 4 timesteps run.
      assert.deepEqual(timesteps, full.slice(1));
      const again = await p.generate({
        ...base,
        prompt: "a red cat",
        edit: { image, strength: 0.6 },
      });
      assert.deepEqual(again.images[0].data, a.images[0].data);
      const other = { ...image, data: image.data.map((v) => 255 - v) };
      const b = await p.generate({
        ...base,
        prompt: "a red cat",
        edit: { image: other, strength: 0.6 },
      });
      assert.notDeepEqual(b.images[0].data, a.images[0].data, "the image matters");

      // A batch of edits: each gets its own bytes.
      const requests: GenerateOptions[] = [
        { ...base, prompt: "a red cat", edit: { image, strength: 0.6 } },
        { ...base, prompt: "a red dog", seed: 7, n: 2, edit: { image: other, strength: 0.6 } },
      ];
      assert.equal(p.batchKey(requests[0]), p.batchKey(requests[1]));
      assert.notEqual(p.batchKey(requests[0]), p.batchKey({ ...requests[0], edit: undefined }));
      const batch = await p.generateBatch(requests);
      for (const [k, request] of requests.entries()) {
        const got = batch[k];
        assert.ok(got.ok);
        const alone = await p.generate(request);
        assert.deepEqual(got.result.images.map((i) => i.data), alone.images.map((i) => i.data));
      }

      // Inpainting the top half: the bottom rows (beyond the reach of the decoder's 3×3
      // convolution and bilinear upsampling, two latent cells) are the same whatever the prompt;
      // the top rows are not.
      const mask = new Uint8Array(W * H).fill(255, 0, W * (H / 2));
      const inpaint = (prompt: string) =>
        p.generate({ ...base, prompt, edit: { image, strength: 0.9, mask } });
      const [x, y] = [await inpaint("a red cat"), await inpaint("a blue dog")];
      assert.deepEqual(rows(x.images[0], H / 2 + 16, H), rows(y.images[0], H / 2 + 16, H));
      assert.notDeepEqual(rows(x.images[0], 0, H / 2), rows(y.images[0], 0, H / 2));
    } finally {
      await p.release();
    }
  });
}
