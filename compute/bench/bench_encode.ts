/**
 * `deno run -A compute/bench/bench_encode.ts` (part of `deno task bench`): encoding one 1024² image
 * at the served defaults and at other `output_compression` values, on two images: one the embedded
 * model drew (flat colours, like most generated images) and a gradient with noise (like a photo).
 * Prints markdown.
 *
 * @module
 */
import { encode as fastPngEncode } from "fast-png";
import { encodeImage } from "../image/encode.ts";
import type { ImageFormat } from "../limits.ts";
import { PngWorkers } from "../image/png_workers.ts";
import { loadPipeline } from "../load.ts";
import type { RgbImage } from "../pipelines/pipeline.ts";
import { torchRandn } from "../random.ts";
import { median } from "./bench_stats.ts";

const side = 1024;

const pipeline = await loadPipeline(new URL("../../models/shapes-tiny", import.meta.url).pathname, {
  device: "cpu",
});
const drawn = (await pipeline.generate({
  prompt: "two red hearts and a blue star on a yellow background",
  seed: 1,
  width: side,
  height: side,
  steps: 8,
})).images[0];
await pipeline.release();

const rgb = new Uint8Array(side * side * 3);
const noise = torchRandn([side * side], 7);
for (let i = 0; i < side * side; i++) {
  const x = i % side, y = Math.floor(i / side);
  rgb[i * 3] = (x / 4 + noise[i] * 8) & 255;
  rgb[i * 3 + 1] = (y / 4) & 255;
  rgb[i * 3 + 2] = ((x + y) / 8 + noise[i] * 4) & 255;
}
const photo: RgbImage = { width: side, height: side, data: rgb };

const workers = new PngWorkers();
const striped = `striped on ${
  navigator.hardwareConcurrency > 4 ? 4 : navigator.hardwareConcurrency
} workers`;
const cases: [string, ImageFormat | "fast-png", number | undefined, PngWorkers?][] = [
  [`PNG, default (zlib level 1, no filters), ${striped} (the server's)`, "png", undefined, workers],
  ["PNG, default, one stream (sharp)", "png", undefined],
  [`PNG, output_compression 66 (level 3), ${striped}`, "png", 66, workers],
  ["PNG, output_compression 66 (level 3), one stream", "png", 66],
  ["PNG, output_compression 33 (level 6, the old default), one stream", "png", 33],
  ["PNG, fast-png", "fast-png", undefined],
  ["JPEG, default (quality 90)", "jpeg", undefined],
  ["JPEG, output_compression 100", "jpeg", 100],
  ["WebP, default (quality 90, effort 2)", "webp", undefined],
  ["WebP, output_compression 100", "webp", 100],
];

console.log("# Encoding (1024², native sharp/libvips unless named)\n");
console.log("| encoding | drawn: ms | drawn: KiB | photo-like: ms | photo-like: KiB |");
console.log("|---|---|---|---|---|");
for (const [name, format, compression, pngWorkers] of cases) {
  const cells = [];
  for (const image of [drawn, photo]) {
    const encode = () =>
      format === "fast-png"
        ? Promise.resolve(
          fastPngEncode({ width: side, height: side, data: image.data, channels: 3 }),
        )
        : encodeImage(image, format, compression, undefined, pngWorkers);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      bytes = (await encode()).length;
      if (i > 0) times.push(performance.now() - t); // the first warms up
    }
    cells.push(median(times).toFixed(1), (bytes / 1024).toFixed(0));
  }
  console.log(`| ${name} | ${cells.join(" | ")} |`);
}
workers.close();
console.log("\nCommand: `deno run -A compute/bench/bench_encode.ts` (part of `deno task bench`).");
