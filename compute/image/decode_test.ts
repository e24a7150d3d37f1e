import assert from "node:assert/strict";
import sharp from "sharp";
import { InvalidInputError } from "../errors.ts";
import { decodeImage, decodeMask, readImageHeader } from "./decode.ts";

/** A PNG of `channels` channels, every pixel `pixel`. */
async function png(width: number, height: number, pixel: number[]): Promise<Uint8Array> {
  const channels = pixel.length as 1 | 2 | 3 | 4;
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = pixel[i % channels];
  return new Uint8Array(await sharp(data, { raw: { width, height, channels } }).png().toBuffer());
}

const refused = (param: string, pattern: RegExp) => (e: InvalidInputError) =>
  e instanceof InvalidInputError && e.param === param && pattern.test(e.message);

Deno.test("readImageHeader: size and alpha of PNG, JPEG and WebP", async () => {
  assert.deepEqual(await readImageHeader(await png(5, 3, [1, 2, 3, 4]), "mask"), {
    width: 5,
    height: 3,
    hasAlpha: true,
  });
  const jpeg = new Uint8Array(await sharp(await png(4, 6, [9, 9, 9])).jpeg().toBuffer());
  assert.deepEqual(await readImageHeader(jpeg, "image"), { width: 4, height: 6, hasAlpha: false });
  const webp = new Uint8Array(await sharp(await png(4, 6, [9, 9, 9])).webp().toBuffer());
  assert.equal((await readImageHeader(webp, "image")).width, 4);
});

Deno.test("readImageHeader: not an image, another format, or too many pixels are refused", async () => {
  await assert.rejects(
    readImageHeader(new TextEncoder().encode("hello"), "image"),
    refused("image", /not an image/),
  );
  const gif = new Uint8Array(await sharp(await png(2, 2, [1, 2, 3])).gif().toBuffer());
  await assert.rejects(readImageHeader(gif, "image"), refused("image", /GIF/));
  // A PNG header claiming 5000x5000 (its checksum is not even right): refused from the header.
  const huge = await png(8, 8, [0, 0, 0]);
  new DataView(huge.buffer).setUint32(16, 5000); // IHDR width
  new DataView(huge.buffer).setUint32(20, 5000); // IHDR height
  await assert.rejects(readImageHeader(huge, "image[1]"), refused("image[1]", /5000x5000/));
});

Deno.test("decodeImage: RGB at the requested size, from grey and RGBA inputs too", async () => {
  const grey = await decodeImage(await png(4, 4, [200]), { width: 8, height: 2 }, "image");
  assert.deepEqual([grey.width, grey.height, grey.data.length], [8, 2, 48]);
  assert.ok(grey.data.every((v) => v === 200));
  const rgba = await decodeImage(await png(2, 2, [10, 20, 30, 0]), { width: 2, height: 2 }, "x");
  assert.deepEqual([...rgba.data.slice(0, 3)], [10, 20, 30]);
  const truncated = (await png(64, 64, [1, 2, 3])).slice(0, 60);
  await assert.rejects(
    decodeImage(truncated, { width: 8, height: 8 }, "image"),
    refused("image", /damaged|truncated/),
  );
});

Deno.test("decodeMask: transparent pixels become repaint (>= 128), opaque keep (< 128)", async () => {
  // Left half transparent, right half opaque, in grey+alpha and RGBA files.
  for (const channels of [2, 4] as const) {
    const data = new Uint8Array(4 * 2 * channels);
    for (let p = 0; p < 8; p++) data[p * channels + channels - 1] = p % 4 < 2 ? 0 : 255;
    const file = new Uint8Array(
      await sharp(data, { raw: { width: 4, height: 2, channels } }).png().toBuffer(),
    );
    const mask = await decodeMask(file, { width: 4, height: 2 }, "mask");
    assert.deepEqual([...mask], [255, 255, 0, 0, 255, 255, 0, 0]);
  }
});
