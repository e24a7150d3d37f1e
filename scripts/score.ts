/**
 * `deno task score [--device cpu] [--limit N] [--guidance default,1] [--steps N] [--model DIR]
 * [--lora PATH [--lora-scale X] [--colour-map FILE]] [--seed-offset N] [--cache …]
 * [--dtypes fp32,q8,q4] [--json FILE]`: runs the
 * held-out prompt × seed pairs of training/heldout.json (captions that training never used)
 * through the real pipeline (compute/ `loadPipeline`, with the registry defaults of
 * `denoise/shapes-tiny`) and prints what the scene checker (scripts/scene_check.ts)
 * finds: accuracy per attribute, and the share of images right on every attribute the prompt
 * names, once per guidance scale. With `--lora`, every image is made with that adapter, and a
 * colour map (`{"captioned": "expected"}`, e.g. the palette-swap adapter's `palette.json`) says
 * which shape colour to expect instead of the captioned one. `--seed-offset N` adds N to every
 * seed: the same prompts from other noise, a second sample for choosing settings (e.g. the
 * default guidance) without fitting them to the noise of the committed seeds. Each further guidance
 * scale is compared with the first image by image: how many images only one of them gets right,
 * and the exact sign test's p-value. `--cache 'none;{"backend":"tea_cache","threshold":0.2};…'`
 * scores each step-cache setting (`;`-separated: `none`, a backend name, or a `--cache-config`
 * JSON object) at every guidance scale, each compared with the first setting the same way, with
 * the share of denoiser calls and FLOPs it saved (compute/bench/denoiser_flops.ts). `--dtypes
 * fp32,q8,q4` scores the model at each weight dtype (re-written by `deno task convert … --dtype`
 * into a temporary folder), each compared with the first the same way.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  adapterFiles,
  type DeviceChoice,
  findModelCard,
  loadPipeline,
  parseCacheConfig,
  signalFlopShare,
  StepCachePolicy,
} from "../compute/mod.ts";
import { convert } from "../compute/convert/mod.ts";
import { allRight, type Expectation, formatScore, judge, readScene, score } from "./scene_check.ts";

const MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const HELD_OUT = new URL("../training/heldout.json", import.meta.url).pathname;

/** One held-out item. */
export interface HeldOutItem {
  prompt: string;
  seed: number;
  expect: Expectation;
}

/** The committed held-out set. */
export async function heldOut(): Promise<HeldOutItem[]> {
  return JSON.parse(await Deno.readTextFile(HELD_OUT)).items;
}

/**
 * Whether seeds matter: for prompts that name no position, how far apart the largest objects of
 * the same prompt's two seeds are (fractions of the image side).
 */
export function seedSpread(
  rows: { prompt: string; seen: { centre?: [number, number] } }[],
): string {
  const byPrompt = new Map<string, [number, number][]>();
  for (const r of rows) {
    if (/ (left|right|top|bottom|centre|center|middle) /.test(r.prompt) || !r.seen.centre) continue;
    byPrompt.set(r.prompt, [...byPrompt.get(r.prompt) ?? [], r.seen.centre]);
  }
  const d: number[] = [];
  for (const cs of byPrompt.values()) {
    if (cs.length >= 2) d.push(Math.hypot(cs[0][0] - cs[1][0], cs[0][1] - cs[1][1]));
  }
  const far = d.filter((x) => x > 0.1).length;
  return `  seeds: ${far}/${d.length} prompts without a position put the object > 0.1 apart ` +
    `for their two seeds (mean ${
      (d.reduce((a, b) => a + b, 0) / Math.max(1, d.length)).toFixed(2)
    })`;
}

/**
 * Whether one setting beats another on the same images: of the images that the two settings
 * judge differently, how many only `a` draws right and how many only `b` does, with the exact
 * two-sided sign test's p-value (McNemar's test) that a coin would split them as unevenly.
 */
export function pairedComparison(a: boolean[], b: boolean[]): {
  onlyA: number;
  onlyB: number;
  p: number;
} {
  if (a.length !== b.length) throw new RangeError("the two settings judged different images");
  const onlyA = a.filter((x, i) => x && !b[i]).length;
  const onlyB = b.filter((x, i) => x && !a[i]).length;
  const n = onlyA + onlyB;
  // P(K ≤ min) for K ~ Binomial(n, ½), term by term in logs (0.5ⁿ alone underflows past
  // n ≈ 1074): ln C(n, k + 1) = ln C(n, k) + ln(n − k) − ln(k + 1).
  let logTerm = -n * Math.LN2, tail = 0;
  for (let k = 0; k <= Math.min(onlyA, onlyB); k++) {
    tail += Math.exp(logTerm);
    logTerm += Math.log(n - k) - Math.log(k + 1);
  }
  return { onlyA, onlyB, p: Math.min(1, 2 * tail) };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      device: { type: "string", default: "cpu" },
      limit: { type: "string" },
      guidance: { type: "string", default: "default,1" },
      steps: { type: "string" },
      model: { type: "string", default: MODEL },
      json: { type: "string" },
      lora: { type: "string" },
      "lora-scale": { type: "string", default: "1" },
      "colour-map": { type: "string" },
      "seed-offset": { type: "string", default: "0" },
      cache: { type: "string", default: "none" },
      dtypes: { type: "string", default: "fp32" },
    },
  });
  const lora = values.lora === undefined ? undefined : [{
    id: values.lora,
    files: await adapterFiles(values.lora),
    scale: Number(values["lora-scale"]),
  }];
  const colourMap: Record<string, string> = values["colour-map"]
    ? JSON.parse(await Deno.readTextFile(values["colour-map"]))
    : {};
  const defaults = findModelCard("denoise/shapes-tiny")!.defaults;
  const dtypes = values.dtypes.split(",");
  const unknown = dtypes.find((d) => !["fp32", "q8", "q4"].includes(d));
  if (unknown) {
    console.error(`--dtypes: '${unknown}' is not one of fp32, q8, q4`);
    Deno.exit(2);
  }
  const converted = dtypes.some((d) => d !== "fp32")
    ? await Deno.makeTempDir({ prefix: "denoise-score-" })
    : undefined;
  try {
    /** The model at `dtype`: the folder itself at fp32, else converted into `converted`. */
    const modelAt = async (dtype: string) => {
      if (dtype === "fp32") return values.model;
      await convert(values.model, `${converted}/${dtype}`, { dtype });
      return `${converted}/${dtype}`;
    };
    const firstModel = await modelAt(dtypes[0]);
    let pipeline = await loadPipeline(firstModel, {
      device: values.device as DeviceChoice,
      defaults,
    });
    const seedOffset = Number(values["seed-offset"]);
    if (!Number.isSafeInteger(seedOffset) || seedOffset < 0) {
      console.error(`--seed-offset must be a whole number ≥ 0, got '${values["seed-offset"]}'`);
      Deno.exit(2);
    }
    const items = (await heldOut()).slice(0, values.limit ? Number(values.limit) : undefined)
      .map((item) => ({ ...item, seed: item.seed + seedOffset }));
    const steps = values.steps ? Number(values.steps) : pipeline.defaults.steps;
    const report: Record<string, unknown> = {};
    console.log(
      `shapes-tiny on ${pipeline.device}: ${items.length} held-out prompt × seed pairs, ` +
        `${pipeline.defaults.width}×${pipeline.defaults.height}, ${steps} steps` +
        (seedOffset ? `, seeds + ${seedOffset}` : "") +
        (values.lora ? `, LoRA ${values.lora} at ${values["lora-scale"]}` : ""),
    );
    const caches = values.cache.split(";").map((text) => {
      const t = text.trim();
      return parseCacheConfig(t.startsWith("{") ? JSON.parse(t) : { backend: t });
    });
    let first: { label: string; right: boolean[] } | undefined;
    for (const [d, dtype] of dtypes.entries()) {
      const model = d === 0 ? firstModel : await modelAt(dtype);
      if (d > 0) {
        await pipeline.release();
        pipeline = await loadPipeline(model, { device: values.device as DeviceChoice, defaults });
      }
      const flops = await signalFlopShare(model, pipeline.defaults);
      for (const g of values.guidance.split(",")) {
        for (const cache of caches) {
          const guidanceScale = g === "default" ? pipeline.defaults.guidanceScale : Number(g);
          const label = (dtypes.length > 1 ? `${dtype}, ` : "") +
            `guidance ${guidanceScale}${g === "default" ? " (default)" : ""}` +
            (cache.backend === "none" ? "" : `, cache ${JSON.stringify(cache)}`);
          const started = performance.now();
          const rows = [];
          let cached = 0;
          for (const item of items) {
            const r = await pipeline.generate({
              prompt: item.prompt,
              seed: item.seed,
              steps,
              guidanceScale,
              lora,
              cache: cache.backend === "none" ? undefined : cache,
            });
            cached += r.timings.cachedSteps ?? 0;
            const seen = readScene(r.images[0]);
            const expect = {
              ...item.expect,
              colour: colourMap[item.expect.colour] ?? item.expect.colour,
            };
            const verdict = judge(expect, seen);
            rows.push({ ...item, seen: { ...seen, features: undefined }, verdict });
          }
          const s = score(rows.map((r) => r.verdict));
          console.log(`\n${label}: ${((performance.now() - started) / 1000).toFixed(0)} s`);
          console.log(formatScore(s));
          console.log(seedSpread(rows));
          if (cache.backend !== "none") {
            // Cached steps skip the denoiser; the steps the policy asks about run the signal.
            const total = items.length * steps;
            const policy = new StepCachePolicy(cache, steps);
            const signalRuns = items.length *
              Array.from({ length: steps }, (_, i) => policy.wantsSignal(i)).filter(Boolean).length;
            const spent = total - cached + signalRuns * flops[cache.backend];
            console.log(
              `  denoiser calls: ${total - cached} of ${total} (${
                (total / (total - cached)).toFixed(2)
              }× fewer); ` +
                `FLOPs with the signal (${(100 * flops[cache.backend]).toFixed(1)} % of a call): ` +
                `${(total / spent).toFixed(2)}× fewer`,
            );
          }
          const right = rows.map((r) => allRight(r.verdict));
          if (first) {
            const c = pairedComparison(first.right, right);
            console.log(
              `  against ${first.label}, image by image: ${c.onlyA} right only there, ` +
                `${c.onlyB} right only here (sign test p = ${c.p.toPrecision(2)})`,
            );
          } else first = { label, right };
          report[label] = { score: s, rows, cachedSteps: cached };
        }
      }
    }
    if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(report, null, 1));
    await pipeline.release();
  } finally {
    if (converted) await Deno.remove(converted, { recursive: true });
  }
}
