/**
 * `deno task judge DIR [DIR …]`: what the scene checker reads in folders of pictures, each with a
 * `truth.json` (`[{ file, expect }]`, as `training/sample.py` and `training/scenes.py --renders`
 * write them): the score, and which shape was read for each shape asked for. For judging
 * pictures made outside the server (a training checkpoint sampled in PyTorch); `deno task score`
 * is the measure of the served model.
 *
 * @module
 */
import sharp from "sharp";
import type { RgbImage } from "../compute/mod.ts";
import { type Expectation, formatScore, judge, readScene, score } from "./scene_check.ts";

/** Reads a PNG (or any image sharp reads), from a path or bytes, as 8-bit RGB. */
export async function readImage(source: string | Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(source).removeAlpha().raw().toBuffer({
    resolveWithObject: true,
  });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** The checker's score of a folder, and counts of the shape read per shape asked for. */
export async function judgeFolder(dir: string): Promise<{
  score: ReturnType<typeof score>;
  shapes: Record<string, Record<string, number>>;
}> {
  const truth: { file: string; expect: Expectation }[] = JSON.parse(
    await Deno.readTextFile(`${dir}/truth.json`),
  );
  const verdicts = [];
  const shapes: Record<string, Record<string, number>> = {};
  for (const { file, expect } of truth) {
    const seen = readScene(await readImage(`${dir}/${file}`));
    verdicts.push(judge(expect, seen));
    const read = seen.shape ?? "nothing";
    shapes[expect.shape] ??= {};
    shapes[expect.shape][read] = (shapes[expect.shape][read] ?? 0) + 1;
  }
  return { score: score(verdicts), shapes };
}

if (import.meta.main) {
  if (Deno.args.length === 0) {
    console.error("usage: deno task judge DIR [DIR …] (each with a truth.json)");
    Deno.exit(2);
  }
  for (const dir of Deno.args) {
    let judged;
    try {
      judged = await judgeFolder(dir);
    } catch (e) {
      console.error(`${dir}: ${e instanceof Error ? e.message : e} (needs a truth.json)`);
      Deno.exit(1);
    }
    const { score, shapes } = judged;
    console.log(dir);
    console.log(formatScore(score));
    console.log("  shape asked → read:");
    for (const [asked, reads] of Object.entries(shapes).sort()) {
      const row = Object.entries(reads).sort((a, b) => b[1] - a[1]);
      console.log(`    ${asked.padEnd(8)} ${row.map(([s, n]) => `${s} ${n}`).join(", ")}`);
    }
  }
}
