/**
 * `deno task grid [--out docs/shapes-grid.png] [--device cpu]`: the README's picture of the
 * embedded model: one row per prompt, one column per seed (42–45), at the registry defaults of
 * `denoise/shapes-tiny`, through the real pipeline (compute/ `loadPipeline`).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import sharp, { type OverlayOptions } from "sharp";
import { type DeviceChoice, findModelCard, loadPipeline } from "../compute/mod.ts";

/** The prompts of the grid, top to bottom. */
export const GRID_PROMPTS = [
  "a red circle on a blue background",
  "a large yellow star in the top left on a black background",
  "two green triangles on a white background",
  "a small purple heart in the bottom right on an orange background",
  "a white ring on a red background",
  "three blue squares on a yellow background",
  "an orange triangle at the bottom on a purple background",
  "a black star on the right on a green background",
];
export const GRID_SEEDS = [42, 43, 44, 45];

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: "docs/shapes-grid.png" },
      device: { type: "string", default: "cpu" },
    },
  });
  const pipeline = await loadPipeline(new URL("../models/shapes-tiny", import.meta.url).pathname, {
    device: values.device as DeviceChoice,
    defaults: findModelCard("denoise/shapes-tiny")!.defaults,
  });
  const { width: w, height: h } = pipeline.defaults;
  const gap = 8;
  const cells: OverlayOptions[] = [];
  for (const [row, prompt] of GRID_PROMPTS.entries()) {
    for (const [col, seed] of GRID_SEEDS.entries()) {
      const img = (await pipeline.generate({ prompt, seed })).images[0];
      cells.push({
        input: Buffer.from(img.data),
        raw: { width: w, height: h, channels: 3 },
        left: gap + col * (w + gap),
        top: gap + row * (h + gap),
      });
    }
    console.log(`${prompt}: seeds ${GRID_SEEDS.join(", ")}`);
  }
  await sharp({
    create: {
      width: gap + GRID_SEEDS.length * (w + gap),
      height: gap + GRID_PROMPTS.length * (h + gap),
      channels: 3,
      background: { r: 255, g: 255, b: 255 },
    },
  }).composite(cells).png({ compressionLevel: 9 }).toFile(values.out);
  console.log(`wrote ${values.out}`);
  await pipeline.release();
}
