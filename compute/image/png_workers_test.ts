import assert from "node:assert/strict";
import zlib from "node:zlib";
import sharp from "sharp";
import fc from "fast-check";
import { adler32, adler32Combine, PngWorkers } from "./png_workers.ts";
import { encodeImage } from "./encode.ts";
import type { RgbImage } from "../pipelines/pipeline.ts";

function image(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    // Flat areas with noise, like drawn and photographed images in one.
    data[i] = ((i / 3) % width < width / 2 ? 40 : 200) + (s >> 27);
  }
  return { width, height, data };
}

Deno.test("Adler-32 of stripes combines into the whole's", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 20000 }), fc.nat(20000), (bytes, cut) => {
    const at = Math.min(cut, bytes.length);
    const [a, b] = [bytes.subarray(0, at), bytes.subarray(at)];
    assert.equal(adler32Combine(adler32(a), adler32(b), b.length), adler32(bytes));
  }));
  // Against zlib's own checksum, the trailer of its stream.
  const bytes = image(300, 200, 5).data;
  const z = zlib.deflateSync(bytes);
  assert.equal(adler32(bytes), new DataView(z.buffer, z.byteOffset + z.length - 4).getUint32(0));
});

Deno.test("striped PNGs decode to the same pixels at every level and shape", async () => {
  const workers = new PngWorkers(3);
  try {
    for (
      const [width, height, level] of [[1024, 1024, 1], [517, 1000, 6], [700, 3, 9], [64, 1, 0]]
    ) {
      const img = image(width, height, width + height);
      const png = await workers.encode(img, level);
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [width, height, 3]);
      assert.ok(new Uint8Array(data).every((v, i) => v === img.data[i]), `${width}×${height}`);
    }
    // Several at once share the workers.
    const images = [1, 2, 3, 4].map((k) => image(600, 500, k));
    const pngs = await Promise.all(images.map((im) => workers.encode(im, 1)));
    for (const [k, png] of pngs.entries()) {
      const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      assert.ok(new Uint8Array(data).every((v, i) => v === images[k].data[i]));
    }
    // encodeImage uses them for large PNGs only, and then gives the same pixels as sharp's file.
    const big = image(512, 512, 9);
    const [striped, single] = [
      await encodeImage(big, "png", undefined, undefined, workers),
      await encodeImage(big, "png"),
    ];
    assert.notDeepEqual(striped, single);
    const decode = async (png: Uint8Array) => new Uint8Array(await sharp(png).raw().toBuffer());
    assert.deepEqual(await decode(striped), await decode(single));
  } finally {
    workers.close();
  }
});
