/**
 * `deno run -A compute/bench/bench_lora.ts` (part of `deno task bench`): what a LoRA adapter costs
 * on the embedded shapes-tiny model, native CPU, 256², one image. The adapter is rank 8 on every
 * Linear and Conv weight of the UNet (the worst case: every weight is merged), written as a Kohya
 * file. Reports, in one run: the model's load time, a denoising step, the first application of an
 * adapter set (read + parse + merge + session), a cached one, and memory per cached variant. Prints
 * markdown.
 *
 * @module
 */
import { loadPipeline } from "../load.ts";
import { adapterFiles } from "../lora/files.ts";
import { flatName, indexGraphWeights } from "../lora/graph_weights.ts";
import { serializeSafetensors } from "../lora/safetensors.ts";
import type { LoraSpec } from "../pipelines/pipeline.ts";
import { Mt19937 } from "../random.ts";
import { median } from "./bench_stats.ts";

const MODEL = new URL("../../models/shapes-tiny", import.meta.url).pathname;
const RANK = 8;

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** A random rank-8 Kohya adapter on every weight of the model's UNet; returns its path. */
async function everyWeightAdapter(dir: string): Promise<{ path: string; layers: number }> {
  const index = indexGraphWeights(await Deno.readFile(`${MODEL}/unet/model.onnx`), "unet");
  const rng = new Mt19937(5);
  const random = (n: number) =>
    Float32Array.from({ length: n }, () => (rng.uniformFloat32() * 2 - 1) * 0.01);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [module, t] of index.byModule) {
    const out = t.op === "Conv" || !t.transposed ? t.dims[0] : t.dims[1];
    const inner = t.op === "Conv" ? t.dims.slice(1) : [t.transposed ? t.dims[0] : t.dims[1]];
    const key = `lora_unet_${flatName(module)}`;
    const tail = t.op === "Conv" ? [1, 1] : [];
    tensors[`${key}.lora_down.weight`] = {
      shape: [RANK, ...inner],
      data: random(RANK * inner.reduce((a, b) => a * b, 1)),
    };
    tensors[`${key}.lora_up.weight`] = { shape: [out, RANK, ...tail], data: random(out * RANK) };
  }
  const path = `${dir}/every-weight.safetensors`;
  await Deno.writeFile(path, serializeSafetensors(tensors));
  return { path, layers: index.byModule.size };
}

const dir = await Deno.makeTempDir({ prefix: "denoise-bench-lora-" });
try {
  const adapter = await everyWeightAdapter(dir);
  const files = await adapterFiles(adapter.path);
  const spec = (scale: number): LoraSpec[] => [{ id: "every-weight", files, scale }];

  const t = performance.now();
  const pipeline = await loadPipeline(MODEL, { device: "cpu", lora: { maxVariants: 8 } });
  const loadMs = performance.now() - t;
  const options = { prompt: "a red circle on a white background", seed: 1, steps: 4 };
  await pipeline.generate({ ...options, steps: 1 }); // warm up
  const base = await pipeline.generate(options);
  const stepMs = median(base.timings.stepMs.slice(1));

  const first = await pipeline.generate({ ...options, lora: spec(1) });
  const cachedRuns = [];
  for (let i = 0; i < 3; i++) {
    cachedRuns.push(await pipeline.generate({ ...options, lora: spec(1) }));
  }
  const cachedLoraMs = median(cachedRuns.map((r) => r.timings.loraMs!));
  const cachedTotal = median(cachedRuns.map((r) => r.timings.totalMs));
  const baseRuns = [];
  for (let i = 0; i < 3; i++) baseRuns.push(await pipeline.generate(options));
  const baseTotal = median(baseRuns.map((r) => r.timings.totalMs));

  // Memory: more variants of the same adapter at other scales.
  const rssBefore = Deno.memoryUsage().rss;
  const extra = [0.25, 0.5, 0.75];
  const firstTimes = [first.timings.loraMs!];
  for (const scale of extra) {
    firstTimes.push(
      (await pipeline.generate({ ...options, steps: 1, lora: spec(scale) })).timings.loraMs!,
    );
  }
  const rssPerVariant = (Deno.memoryUsage().rss - rssBefore) / extra.length;
  const cached = pipeline.cached;
  await pipeline.release();

  console.log("# LoRA benchmark\n");
  console.log(
    `Model: the embedded shapes-tiny (UNet ${
      mib((await Deno.stat(`${MODEL}/unet/model.onnx`)).size)
    } MiB), native CPU, 256², 1 image. Adapter: rank ${RANK} on all ${adapter.layers} Linear/Conv weights of the UNet (Kohya file, ${
      mib((await Deno.stat(adapter.path)).size)
    } MiB).\n`,
  );
  console.log("| what | ms |");
  console.log("|---|---|");
  console.log(`| model load (all graphs) | ${loadMs.toFixed(0)} |`);
  console.log(`| one denoising step | ${stepMs.toFixed(1)} |`);
  console.log(
    `| first application: read + parse + merge + session (median of ${firstTimes.length}) | ${
      median(firstTimes).toFixed(0)
    } |`,
  );
  console.log(`| cached application | ${cachedLoraMs.toFixed(3)} |`);
  console.log(
    `| request of 4 steps: base / cached adapter (medians of 3) | ${baseTotal.toFixed(0)} / ${
      cachedTotal.toFixed(0)
    } |`,
  );
  console.log(
    `\nFirst application / model load: ${(median(firstTimes) / loadMs).toFixed(2)}. ` +
      `Memory per cached variant: ${mib(cached.bytes / cached.variants)} MiB of merged graphs ` +
      `(process RSS grew ${
        mib(rssPerVariant)
      } MiB per variant). Cache: ${cached.variants} variants.`,
  );
  console.log("\nCommand: `deno run -A compute/bench/bench_lora.ts` (part of `deno task bench`).");
} finally {
  await Deno.remove(dir, { recursive: true });
}
