/**
 * `deno run -A compute/bench/bench_memory.ts` (part of `deno task bench`): what ONNX Runtime's CPU
 * arena and `malloc_trim` do to memory after a burst, and to a step. shapes-tiny, native CPU. Each
 * setting runs in its own process: warm up at 256², take the RSS baseline and step times, run a
 * burst of three 1024² n = 4 requests, trim (where the setting says), then take the RSS and step
 * times again. Prints markdown.
 *
 * @module
 */
import { trimHeap } from "../backends/heap.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { folderGraphs } from "../model/model_folder.ts";
import { StableDiffusionPipeline } from "../families/stable_diffusion/stable_diffusion.ts";
import { median } from "./bench_stats.ts";

const MODEL = new URL("../../models/shapes-tiny", import.meta.url).pathname;
const SETTINGS: Record<string, { cpuArena: boolean; trim: boolean }> = {
  "arena on (ONNX Runtime's default)": { cpuArena: true, trim: false },
  "arena off": { cpuArena: false, trim: false },
  "arena off + malloc_trim when idle (ours)": { cpuArena: false, trim: true },
};

const rssMib = () => Deno.memoryUsage().rss / 2 ** 20;

if (Deno.args[0] === "--child") {
  const setting = SETTINGS[Deno.args[1]];
  const backend = createNodeBackend(navigator.hardwareConcurrency, setting);
  const pipeline = await StableDiffusionPipeline.load(folderGraphs(MODEL, backend));
  const small = { prompt: "a red circle on a white background", seed: 1, steps: 12 };
  const steps = async () => {
    const times = [];
    for (let i = 0; i < 3; i++) {
      times.push(...(await pipeline.generate(small)).timings.stepMs.slice(1));
    }
    return median(times);
  };
  await pipeline.generate({ ...small, steps: 2 });
  const stepBefore = await steps();
  if (setting.trim) trimHeap();
  const baseline = rssMib();
  let peak = 0;
  for (let i = 0; i < 3; i++) {
    await pipeline.generate({ ...small, width: 1024, height: 1024, n: 4, steps: 2 });
    peak = Math.max(peak, rssMib());
  }
  // Collect the burst's JavaScript garbage (its typed arrays) first, when the flag allows it.
  (globalThis as { gc?: () => void }).gc?.();
  if (setting.trim) trimHeap();
  const after = rssMib();
  const stepAfter = await steps();
  console.log(JSON.stringify({ baseline, peak, after, stepBefore, stepAfter }));
} else {
  console.log("# Memory after a burst\n");
  console.log(
    "shapes-tiny, native CPU, each row a fresh process: baseline after warm-up at 256², then three 1024² n = 4 requests (2 steps).\n",
  );
  console.log(
    "| setting | RSS baseline MiB | RSS after the burst MiB | after / baseline | step ms before / after (256², medians) |",
  );
  console.log("|---|---|---|---|---|");
  for (const name of Object.keys(SETTINGS)) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL(import.meta.url).pathname,
        "--child",
        name,
      ],
      stdout: "piped",
    }).output();
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    console.log(
      `| ${name} | ${r.baseline.toFixed(0)} | ${r.after.toFixed(0)} | ${
        (r.after / r.baseline).toFixed(2)
      } | ${r.stepBefore.toFixed(1)} / ${r.stepAfter.toFixed(1)} |`,
    );
  }
  console.log(
    "\nCommand: `deno run -A compute/bench/bench_memory.ts` (part of `deno task bench`).",
  );
}
