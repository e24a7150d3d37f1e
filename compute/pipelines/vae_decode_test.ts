import assert from "node:assert/strict";
import { loadPipeline } from "../load.ts";
import { CancelledError, NonFiniteOutputError } from "../errors.ts";
import { toRgbImages } from "./common.ts";
import { decodeLatents } from "./vae_decode.ts";

/** A decoder whose every pixel depends only on its own latent: a nearest-neighbour 8× upsample
 * of channels 0–2. Blended tiles of it must equal the whole image. */
function pointwise(channels: number) {
  const calls: number[][] = [];
  const run = (z: Float32Array, n: number, h: number, w: number) => {
    calls.push([n, h, w]);
    const out = new Float32Array(n * 3 * h * 8 * w * 8);
    for (let b = 0; b < n; b++) {
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < h * 8; y++) {
          for (let x = 0; x < w * 8; x++) {
            out[((b * 3 + c) * h * 8 + y) * w * 8 + x] =
              z[((b * channels + c) * h + (y >> 3)) * w + (x >> 3)];
          }
        }
      }
    }
    return Promise.resolve(out);
  };
  return { run, calls };
}

Deno.test("slicing (the default) decodes one image at a time; tiling covers the image with blended tiles", async () => {
  const [n, channels, h, w] = [2, 4, 40, 56];
  const z = Float32Array.from({ length: n * channels * h * w }, (_, i) => Math.sin(i * 0.37));
  const shape = { n, channels, h, w, scale: 8 };
  const whole = pointwise(channels);
  const expected = await decodeLatents(z, shape, whole.run, { slicing: false }, 16);
  assert.deepEqual(whole.calls, [[2, 40, 56]]);

  const sliced = pointwise(channels);
  assert.deepEqual(await decodeLatents(z, shape, sliced.run, {}, 16), expected);
  assert.deepEqual(sliced.calls, [[1, 40, 56], [1, 40, 56]]);

  const tiled = pointwise(channels);
  const got = await decodeLatents(z, shape, tiled.run, { tiling: true }, 16);
  // Tiles of 16 latents every 12, per image: rows at 0, 12, 24, 36; columns at 0, 12, …, 48.
  assert.equal(tiled.calls.length, 2 * 4 * 5);
  assert.ok(tiled.calls.every(([count, th, tw]) => count === 1 && th <= 16 && tw <= 16));
  let max = 0;
  for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - expected[i]));
  assert.ok(max < 1e-6, `max |Δ| ${max}`);
});

Deno.test("a cancelled decode stops before its next image or tile", async () => {
  const [n, channels, h, w] = [3, 4, 40, 56];
  const z = new Float32Array(n * channels * h * w);
  const shape = { n, channels, h, w, scale: 8 };
  for (const settings of [{}, { tiling: true }]) {
    const controller = new AbortController();
    const decoder = pointwise(channels);
    const run = (latents: Float32Array, count: number, th: number, tw: number) => {
      controller.abort(); // the client leaves while the first piece decodes
      return decoder.run(latents, count, th, tw);
    };
    await assert.rejects(
      decodeLatents(z, shape, run, settings, 16, controller.signal),
      CancelledError,
    );
    assert.equal(decoder.calls.length, 1, JSON.stringify(settings));
  }
});

Deno.test("every fixture: a batch decoded one image at a time (the default) has the bytes of a whole decode", async () => {
  for (const name of ["sd15-tiny", "sd-turbo-tiny", "qwen-image-tiny", "z-image-turbo-tiny"]) {
    const dir = new URL(`../../fixtures/models/${name}`, import.meta.url).pathname;
    const options = { prompt: "three red cubes", seed: 4, width: 128, height: 64, steps: 2, n: 3 };
    const images: Uint8Array[][] = [];
    for (const vae of [{ slicing: false }, {}]) {
      const pipeline = await loadPipeline(dir, { device: "cpu", vae });
      images.push((await pipeline.generate(options)).images.map((image) => image.data));
      await pipeline.release();
    }
    assert.deepEqual(images[1], images[0], name);
  }
});

Deno.test("a tiled decode of a real pipeline differs from the whole one only slightly at the seams", async () => {
  const dir = new URL("../../fixtures/models/sd15-tiny", import.meta.url).pathname;
  const options = { prompt: "a red cube", seed: 9, width: 640, height: 640, steps: 1 };
  const images: Uint8Array[] = [];
  for (const vae of [{}, { tiling: true }]) {
    const pipeline = await loadPipeline(dir, { device: "cpu", vae });
    images.push((await pipeline.generate(options)).images[0].data);
    await pipeline.release();
  }
  let max = 0, sum = 0;
  images[0].forEach((v, i) => {
    const d = Math.abs(v - images[1][i]);
    max = Math.max(max, d);
    sum += d;
  });
  // The fixture's decoder sees a 3×3 latent neighbourhood, so only pixels near a seam change
  // (max 26, mean 0.11 on 0–255 measured for another prompt).
  assert.ok(
    max <= 40 && sum / images[0].length < 0.5,
    `max ${max}, mean ${sum / images[0].length}`,
  );
});

Deno.test("NaN or infinite latents and pixels throw NonFiniteOutputError instead of a black image", async () => {
  const { run } = pointwise(4);
  const shape = { n: 1, channels: 4, h: 2, w: 2, scale: 8 };
  const stageOf = (stage: string) => (e: unknown) =>
    e instanceof NonFiniteOutputError && e.stage === stage;
  for (const bad of [NaN, Infinity, -Infinity]) {
    const latents = new Float32Array(16).fill(0.5);
    latents[7] = bad;
    await assert.rejects(decodeLatents(latents, shape, run, {}, 64), stageOf("latents"));
    const pixels = new Float32Array(3 * 16 * 16);
    pixels[100] = bad;
    assert.throws(() => toRgbImages(pixels, 1, 16, 16), stageOf("pixels"));
  }
  const fine = toRgbImages(new Float32Array(3 * 16 * 16).fill(-1), 1, 16, 16);
  assert.ok(fine[0].data.every((v) => v === 0));
});
