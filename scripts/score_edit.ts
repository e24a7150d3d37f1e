/**
 * `deno task score:edit [--device cpu] [--limit N] [--strength 0.8] [--model DIR] [--json FILE]`:
 * edits on the embedded model, judged by the scene checker (scripts/scene_check.ts). For each
 * held-out prompt × seed of training/heldout.json it draws the source image (registry defaults of
 * `denoise/shapes-tiny`), then changes one attribute of the prompt (in turn its shape colour, its
 * shape, its background colour) and edits the source with the new prompt (seed + 1):
 *
 * - image-to-image at `--strength`: is the changed attribute what the new prompt says, and are the
 *   other two (colour, shape, background) what the checker saw in the source?
 * - inpainting (colour and shape changes only) with a mask over the source's objects (pixels off
 *   the background colour, grown by 16 pixels): the changed attribute, and whether the pixels
 *   outside the mask are unchanged within the VAE's reconstruction error: their mean difference
 *   from the source is at most that of the source through `vae_encoder` → `vae_decoder` (the same
 *   pipeline with a mask that keeps everything) plus 1/255, measured beyond 24 pixels from the
 *   mask (the reach of the decoder's three 3×3 latent convolutions).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type DeviceChoice, findModelCard, loadPipeline, type RgbImage } from "../compute/mod.ts";
import { nearestColour, PALETTE, readScene, type SceneReading, SHAPES } from "./scene_check.ts";
import { heldOut, type HeldOutItem } from "./score.ts";

const MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const COLOURS = Object.keys(PALETTE);
type Changed = "colour" | "shape" | "background";

/** An edit of one held-out prompt: which attribute changes, to what, and the new prompt. */
export interface EditPlan {
  attribute: Changed;
  from: string;
  to: string;
  prompt: string;
}

/** "a"/"an" for the word that follows. */
const article = (word: string) => (/^[aeiou]/.test(word) ? "an" : "a");

/**
 * The `k`-th edit of an item (k mod 3: colour, shape, background), to a value unlike the old one
 * and unlike the other colour in the scene, with the prompt's wording kept (plural shapes, articles).
 */
export function planEdit(item: HeldOutItem, k: number): EditPlan {
  const { colour, shape, background } = item.expect;
  const attribute = (["colour", "shape", "background"] as const)[k % 3];
  const pick = (options: readonly string[], avoid: string[]) => {
    const free = options.filter((o) => !avoid.includes(o));
    return free[Math.floor(k / 3) % free.length];
  };
  let prompt = item.prompt;
  let from: string, to: string;
  if (attribute === "colour") {
    [from, to] = [colour, pick(COLOURS, [colour, background])];
    prompt = prompt.replace(
      new RegExp(`\\b(?:(a|an) )?((?:small |large )?)${from}\\b(?! background)`),
      (_, a, size) => `${a ? `${article(size || to)} ` : ""}${size}${to}`,
    );
  } else if (attribute === "shape") {
    [from, to] = [shape, pick(SHAPES, [shape])];
    prompt = prompt.replace(new RegExp(`\\b${from}(s?)\\b`), (_, s) => `${to}${s}`);
  } else {
    [from, to] = [background, pick(COLOURS, [background, colour])];
    prompt = prompt.replace(
      new RegExp(`\\b(a|an) ${from} background`),
      `${article(to)} ${to} background`,
    );
  }
  if (prompt === item.prompt) throw new Error(`could not edit '${item.prompt}' (${attribute})`);
  return { attribute, from, to, prompt };
}

/**
 * Where the source's objects are: pixels whose palette colour is not the border's majority
 * colour, grown by `grow` pixels (255 = repaint).
 */
export function objectMask(image: RgbImage, background: string, grow: number): Uint8Array {
  const { width: W, height: H, data } = image;
  const mask = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (nearestColour(data[3 * i], data[3 * i + 1], data[3 * i + 2]) === background) continue;
      for (let dy = -grow; dy <= grow; dy++) {
        const row = y + dy;
        if (row < 0 || row >= H) continue;
        mask.fill(255, row * W + Math.max(0, x - grow), row * W + Math.min(W, x + grow + 1));
      }
    }
  }
  return mask;
}

/** Pixels farther than `d` (Chebyshev) from every masked pixel. */
function farFrom(mask: Uint8Array, W: number, H: number, d: number): Uint8Array {
  const far = new Uint8Array(W * H).fill(1);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (!mask[y * W + x]) continue;
      for (let yy = Math.max(0, y - d); yy <= Math.min(H - 1, y + d); yy++) {
        far.fill(0, yy * W + Math.max(0, x - d), yy * W + Math.min(W, x + d + 1));
      }
    }
  }
  return far;
}

/** Mean absolute difference (in 1/255) over the pixels where `where` is 1. */
function meanDiff(a: Uint8Array, b: Uint8Array, where: Uint8Array): number {
  let sum = 0, n = 0;
  for (let i = 0; i < where.length; i++) {
    if (!where[i]) continue;
    for (let c = 0; c < 3; c++) sum += Math.abs(a[3 * i + c] - b[3 * i + c]);
    n += 3;
  }
  return n ? sum / n : 0;
}

const attributeOf = (seen: SceneReading, a: Changed) => seen[a];

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      device: { type: "string", default: "cpu" },
      limit: { type: "string" },
      strength: { type: "string", default: "0.8" },
      model: { type: "string", default: MODEL },
      json: { type: "string" },
    },
  });
  const strength = Number(values.strength);
  const defaults = findModelCard("denoise/shapes-tiny")!.defaults;
  const pipeline = await loadPipeline(values.model, {
    device: values.device as DeviceChoice,
    defaults,
  });
  const items = (await heldOut()).slice(0, values.limit ? Number(values.limit) : undefined);
  const { width, height, steps, guidanceScale } = pipeline.defaults;
  console.log(
    `shapes-tiny edits on ${pipeline.device}: ${items.length} held-out prompt × seed pairs, ` +
      `${width}×${height}, ${steps} steps, guidance ${guidanceScale}, strength ${strength}`,
  );
  const started = performance.now();
  const tally = {
    img2img: { followed: 0, kept: 0, both: 0, of: 0 },
    inpaint: { followed: 0, unchanged: 0, both: 0, of: 0 },
  };
  const byAttribute: Record<string, { followed: number; of: number }> = {};
  let reconstruction = 0, outside = 0;
  const rows = [];
  for (const [k, item] of items.entries()) {
    const plan = planEdit(item, k);
    const source = (await pipeline.generate({ prompt: item.prompt, seed: item.seed })).images[0];
    const before = readScene(source);
    const edited = (await pipeline.generate({
      prompt: plan.prompt,
      seed: item.seed + 1,
      edit: { image: source, strength },
    })).images[0];
    const after = readScene(edited);
    const followed = attributeOf(after, plan.attribute) === plan.to;
    const others = (["colour", "shape", "background"] as const).filter((a) => a !== plan.attribute);
    const kept = others.every((a) => attributeOf(after, a) === attributeOf(before, a));
    tally.img2img.of++;
    tally.img2img.followed += +followed;
    tally.img2img.kept += +kept;
    tally.img2img.both += +(followed && kept);
    const a = byAttribute[`img2img ${plan.attribute}`] ??= { followed: 0, of: 0 };
    a.of++;
    a.followed += +followed;
    const row: Record<string, unknown> = { ...plan, source: item.prompt, seed: item.seed };
    row.img2img = { followed, kept, seen: { ...after, features: undefined } };
    if (plan.attribute !== "background") {
      const mask = objectMask(source, before.background, 16);
      const far = farFrom(mask, width, height, 24);
      const inpainted = (await pipeline.generate({
        prompt: plan.prompt,
        seed: item.seed + 1,
        edit: { image: source, strength, mask },
      })).images[0];
      const roundTrip = (await pipeline.generate({
        prompt: item.prompt,
        seed: item.seed + 1,
        steps: 1,
        edit: { image: source, strength: 1, mask: new Uint8Array(width * height) },
      })).images[0];
      const seen = readScene(inpainted);
      const ok = attributeOf(seen, plan.attribute) === plan.to;
      const vaeError = meanDiff(roundTrip.data, source.data, far);
      const diff = meanDiff(inpainted.data, source.data, far);
      const unchanged = diff <= vaeError + 1;
      reconstruction += vaeError;
      outside += diff;
      tally.inpaint.of++;
      tally.inpaint.followed += +ok;
      tally.inpaint.unchanged += +unchanged;
      tally.inpaint.both += +(ok && unchanged);
      const b = byAttribute[`inpaint ${plan.attribute}`] ??= { followed: 0, of: 0 };
      b.of++;
      b.followed += +ok;
      row.inpaint = { followed: ok, unchanged, outsideDiff: diff, vaeError };
    }
    rows.push(row);
    if ((k + 1) % 10 === 0) {
      console.error(
        `  ${k + 1}/${items.length} (${((performance.now() - started) / 1000).toFixed(0)} s)`,
      );
    }
  }
  const pct = (x: number, of: number) => `${x}/${of} (${(100 * x / Math.max(1, of)).toFixed(1)} %)`;
  const i2i = tally.img2img, inp = tally.inpaint;
  console.log(`\n${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(`image-to-image:`);
  console.log(`  changed attribute follows the new prompt: ${pct(i2i.followed, i2i.of)}`);
  console.log(`  other two attributes as in the source:    ${pct(i2i.kept, i2i.of)}`);
  console.log(`  both:                                     ${pct(i2i.both, i2i.of)}`);
  console.log(`inpainting (colour and shape edits, mask over the objects):`);
  console.log(`  changed attribute follows the new prompt: ${pct(inp.followed, inp.of)}`);
  console.log(
    `  outside the mask unchanged within the VAE's reconstruction error: ${
      pct(inp.unchanged, inp.of)
    } (mean |Δ| ${(outside / Math.max(1, inp.of)).toFixed(2)}/255 against the round trip's ${
      (reconstruction / Math.max(1, inp.of)).toFixed(2)
    }/255)`,
  );
  console.log(`  both:                                     ${pct(inp.both, inp.of)}`);
  for (const [name, v] of Object.entries(byAttribute)) {
    console.log(`  ${name.padEnd(20)} follows: ${pct(v.followed, v.of)}`);
  }
  if (values.json) {
    await Deno.writeTextFile(values.json, JSON.stringify({ tally, byAttribute, rows }, null, 1));
  }
  await pipeline.release();
}
