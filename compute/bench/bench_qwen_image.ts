/**
 * `deno run -A compute/bench/bench_qwen_image.ts [--blocks 2] [--layers 2] [--dtype q4]
 * [--sizes 512,1024] [--batch 2] [--prompt 128] [--only transformer|text_encoder]
 * [--cfg-mode batch|sequential|auto] [--served]`: whether q4 Qwen-Image fits a machine, from a
 * random checkpoint at its real widths with few blocks.
 *
 * Builds, through the converter's own network builders, `QwenImageTransformer2DModel` at
 * Qwen/Qwen-Image's config (24 heads × 128, joint_attention_dim 3584, in_channels 64, out_channels
 * 16; `networks/qwen_image_transformer.ts`) with `--blocks` blocks, and the Qwen2.5-VL-7B language
 * model as Qwen-Image reads it (hidden 3584, 28 heads, 4 KV heads, intermediate 18944, q/k/v
 * biases; `networks/qwen3_text.ts`) with `--layers` layers, from random weights at `--dtype`
 * (`random_weights.ts`). The text encoder's vocabulary is cut to 1024 rows: its embedding is a
 * Gather that costs no compute, and its real size (152064 × 3584, float32 at every dtype but fp16)
 * is added to the extrapolation by arithmetic.
 *
 * Each graph opens in a fresh process: peak RSS while loading, RSS loaded, then per `--sizes` (in
 * the order given, so list them ascending: VmHWM only grows) one forward's time and the peak RSS
 * after it. The transformer runs `--batch` rows (the server's true CFG runs prompt and negative
 * prompt as one batch of 2) of (size/16)² image tokens and `--prompt` text tokens; the text
 * encoder `--batch` rows of `--prompt` + 34 tokens (the template's dropped prefix). Then it
 * extrapolates to the full model (60 blocks, 28 layers) from the same measures of a 0-block build
 * (the layers outside the blocks, the runtime, the process): weights by bytes per block, loaded
 * RSS by RSS per block (at q4 ONNX Runtime holds more than the weights' bytes), the peak as that +
 * the largest forward's activations, time by the seconds per block. Each forward's CPU seconds
 * (all threads) are given too: on a shared machine they vary less than the wall time.
 *
 * The transformer's rows go through the server's own `rowCalls` (`--cfg-mode`, default `batch`:
 * one call; `sequential`: one row a call, as diffusers runs true CFG). After its forwards each
 * graph is closed (its freed pages trimmed: the RSS then) and opened again (the reopen's seconds,
 * from the page cache): what `--enable-cpu-offload` costs a request. The served peak is
 * extrapolated both ways: both graphs loaded plus the larger activations, and with
 * `--enable-cpu-offload` the larger of the two graphs each with its own activations (they take
 * turns).
 *
 * `--served` measures the served pipeline instead: the built transformer and text encoder in a
 * model folder with the tiny fixture's tokenizer, scheduler and VAE (fixtures/models/qwen-image-tiny),
 * loaded with `loadPipeline` in a fresh process, one 1-step true-CFG generation at the largest of
 * `--sizes`: the peak RSS of the whole process, as the server ran it before (`--cfg-mode batch`,
 * both graphs held) and as it runs it now at that size (`auto`, with `--enable-cpu-offload`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  qwenImageTransformer,
  type QwenImageTransformerConfig,
} from "../networks/qwen_image_transformer.ts";
import { type Qwen3Config, qwen3TextEncoder } from "../networks/qwen3_text.ts";
import { WEIGHT_DTYPES, type WeightDtype } from "../graph/onnx_builder.ts";
import { randomWeights } from "./random_weights.ts";
import { formatBytes } from "../backends/backend.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { peakRssMib } from "./bench_stats.ts";
import { CFG_MODES, type CfgMode, rowCalls } from "../pipelines/row_calls.ts";
import { trimHeap } from "../backends/heap.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    blocks: { type: "string", default: "2" },
    layers: { type: "string", default: "2" },
    dtype: { type: "string", default: "q4" },
    sizes: { type: "string", default: "512,1024" },
    batch: { type: "string", default: "2" },
    prompt: { type: "string", default: "128" },
    only: { type: "string" },
    "cfg-mode": { type: "string", default: "batch" },
    served: { type: "boolean", default: false },
    offload: { type: "boolean", default: false },
    child: { type: "string" },
    dir: { type: "string" },
  },
});
const DTYPE = values.dtype as WeightDtype;
if (!WEIGHT_DTYPES.includes(DTYPE)) throw new Error(`--dtype must be one of ${WEIGHT_DTYPES}`);
const SIZES = values.sizes!.split(",").map(Number);
const BATCH = Number(values.batch);
const PROMPT = Number(values.prompt);
const CFG_MODE = values["cfg-mode"] as CfgMode;
if (!CFG_MODES.includes(CFG_MODE)) throw new Error(`--cfg-mode must be one of ${CFG_MODES}`);

/** Qwen/Qwen-Image's `transformer/config.json` (diffusers' defaults are the same). */
const TRANSFORMER: QwenImageTransformerConfig = {
  patchSize: 2,
  inChannels: 64,
  outChannels: 16,
  layers: 60,
  headDim: 128,
  heads: 24,
  jointAttentionDim: 3584,
  axesDims: [16, 56, 56],
};
/** Qwen/Qwen-Image's `text_encoder/config.json` (Qwen2.5-VL-7B's language model). */
const TEXT: Qwen3Config = {
  vocabSize: 152064,
  hiddenSize: 3584,
  intermediateSize: 18944,
  layers: 28,
  heads: 28,
  kvHeads: 4,
  headDim: 128,
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  qkNorm: false,
  qkvBias: true,
  read: "last",
};
/** Rows of the benchmark's text embedding (the real one is added by arithmetic). */
const BENCH_VOCAB = 1024;
/** Tokens of Qwen-Image's prompt template that the pipeline drops after encoding. */
const TEMPLATE_TOKENS = 34;

type Component = "transformer" | "text_encoder";

/** A `/proc/self/status` field in MiB: `VmRSS`, and its parts `RssAnon` and `RssFile`. */
const statusMib = async (field: string) =>
  Number(
    (await Deno.readTextFile("/proc/self/status")).match(new RegExp(`${field}:\\s+(\\d+) kB`))![1],
  ) / 1024;

/** This process's CPU seconds so far (user + system, all threads; `/proc/self/stat`, 100 Hz). */
const cpuS = async () => {
  const fields = (await Deno.readTextFile("/proc/self/stat")).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

const wave = (n: number, amplitude: number) =>
  Float32Array.from({ length: n }, (_, i) => amplitude * Math.sin(i * 0.37));

/** The component's graph with `n` blocks (layers), its weights written at `dir`. */
async function build(component: Component, n: number, dir: string): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  const weights = randomWeights(`${dir}/model.onnx_data`, "model.onnx_data", DTYPE, 1517);
  const graph = component === "transformer"
    ? qwenImageTransformer({ ...TRANSFORMER, layers: n }, weights)
    : qwen3TextEncoder({ ...TEXT, vocabSize: BENCH_VOCAB, layers: n }, weights);
  await Deno.writeFile(
    `${dir}/model.onnx`,
    graph.serialize({ externalData: "model.onnx_data" }).model,
  );
  weights.close();
  return (await Deno.stat(`${dir}/model.onnx_data`)).size;
}

if (values.child === "served") {
  const { loadPipeline } = await import("../load.ts");
  const t = performance.now();
  const pipeline = await loadPipeline(values.dir!, {
    device: "cpu",
    execution: { cfgMode: CFG_MODE, offload: values.offload },
  });
  const loadS = (performance.now() - t) / 1000;
  const loadedMib = await statusMib("VmRSS");
  const size = Math.max(...SIZES);
  const r = await pipeline.generate({
    prompt: "a red cube on a table",
    width: size,
    height: size,
    steps: 1,
    seed: 1,
  });
  console.log(JSON.stringify({
    loadS,
    loadedMib,
    peakMib: await peakRssMib(),
    textEncodeS: r.timings.textEncodeMs / 1000,
    stepS: r.timings.stepMs[0] / 1000,
  }));
  await pipeline.release();
} else if (values.child) {
  const backend = createNodeBackend();
  let t = performance.now();
  const open = () =>
    backend.createSession({
      path: `${values.dir}/model.onnx`,
      externalDataPath: `${values.dir}/model.onnx_data`,
    });
  const opened = await open();
  const session = values.child === "transformer" ? rowCalls([opened], backend, CFG_MODE) : opened;
  const loadS = (performance.now() - t) / 1000;
  const loadPeakMib = await peakRssMib();
  const loadedMib = await statusMib("VmRSS");
  const loadedFileMib = await statusMib("RssFile");
  const runs = [];
  for (const size of SIZES) {
    const feeds = values.child === "transformer"
      ? (() => {
        const side = size / 16;
        const tokens = side * side;
        return {
          hidden_states: backend.tensor("float32", wave(BATCH * tokens * 64, 1), [
            BATCH,
            tokens,
            64,
          ]),
          timestep: backend.tensor("float32", new Float32Array(BATCH).fill(0.7), [BATCH]),
          encoder_hidden_states: backend.tensor(
            "float32",
            wave(BATCH * PROMPT * TRANSFORMER.jointAttentionDim, 1),
            [BATCH, PROMPT, TRANSFORMER.jointAttentionDim],
          ),
          encoder_hidden_states_mask: backend.tensor(
            "int64",
            new BigInt64Array(BATCH * PROMPT).fill(1n),
            [BATCH, PROMPT],
          ),
          img_height: backend.tensor("int64", new BigInt64Array([BigInt(side)]), []),
          img_width: backend.tensor("int64", new BigInt64Array([BigInt(side)]), []),
        };
      })()
      : (() => {
        const length = PROMPT + TEMPLATE_TOKENS;
        return {
          input_ids: backend.tensor(
            "int64",
            BigInt64Array.from(
              { length: BATCH * length },
              (_, i) => BigInt((i * 37) % BENCH_VOCAB),
            ),
            [BATCH, length],
          ),
          attention_mask: backend.tensor(
            "int64",
            new BigInt64Array(BATCH * length).fill(1n),
            [BATCH, length],
          ),
        };
      })();
    t = performance.now();
    const cpu = await cpuS();
    const out = Object.values(await session.run(feeds))[0];
    await out.getData();
    runs.push({
      size,
      forwardS: (performance.now() - t) / 1000,
      cpuS: (await cpuS()) - cpu,
      peakMib: await peakRssMib(),
    });
    // The text encoder's input does not depend on the image size: one run tells it all.
    if (values.child === "text_encoder") break;
  }
  // What offloading costs: close (and trim), then open again from the page cache.
  await session.release();
  trimHeap();
  const releasedMib = await statusMib("VmRSS");
  t = performance.now();
  await (await open()).release();
  const reopenS = (performance.now() - t) / 1000;
  console.log(
    JSON.stringify({ loadS, loadPeakMib, loadedMib, loadedFileMib, runs, releasedMib, reopenS }),
  );
} else {
  const components: Component[] = values.only
    ? [values.only as Component]
    : ["transformer", "text_encoder"];
  const root = await Deno.makeTempDir({ prefix: "denoise-qwen-bench-" });
  const MIB = 2 ** 20;
  /** Opens the graph at `dir` in a fresh process and runs it at each size. */
  const measure = async (component: Component, dir: string) => {
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", import.meta.filename!, ...Deno.args, "--child", component, "--dir", dir],
      stderr: "inherit",
    }).output();
    if (!child.success) throw new Error(`${component}: the measuring process failed`);
    return JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
  };
  try {
    if (values.served) {
      const model = `${root}/model`;
      const fixture = new URL("../../fixtures/models/qwen-image-tiny", import.meta.url).pathname;
      await build("transformer", Number(values.blocks), `${model}/transformer`);
      await build("text_encoder", Number(values.layers), `${model}/text_encoder`);
      for (const part of ["model_index.json", "tokenizer", "scheduler", "vae_decoder"]) {
        await new Deno.Command("cp", { args: ["-r", `${fixture}/${part}`, model] }).output();
      }
      console.log(
        `# Qwen-Image served (loadPipeline, one 1-step true-CFG generation at ${
          Math.max(...SIZES)
        }²), ${values.blocks} blocks, ${values.layers} text layers, ${DTYPE}, the fixture's tiny VAE\n`,
      );
      console.log("| configuration | RSS loaded MiB | peak RSS MiB | text encoding s | step s |");
      console.log("| ------------- | -------------- | ------------ | --------------- | ------ |");
      for (
        const [label, flags] of [
          ["--cfg-mode batch, both graphs held (before)", ["--cfg-mode", "batch"]],
          ["--cfg-mode auto --enable-cpu-offload (now)", ["--cfg-mode", "auto", "--offload"]],
        ] as const
      ) {
        const child = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            import.meta.filename!,
            "--sizes",
            String(Math.max(...SIZES)),
            ...flags,
            "--child",
            "served",
            "--dir",
            model,
          ],
          stderr: "inherit",
        }).output();
        if (!child.success) throw new Error(`${label}: the measuring process failed`);
        const r = JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
        console.log(
          `| ${label} | ${r.loadedMib.toFixed(0)} | ${r.peakMib.toFixed(0)} | ${
            r.textEncodeS.toFixed(1)
          } | ${r.stepS.toFixed(1)} |`,
        );
      }
      await Deno.remove(root, { recursive: true });
      Deno.exit(0);
    }
    console.log(
      `# Qwen-Image at real widths, ${DTYPE}, native CPU, batch ${BATCH} (--cfg-mode ${CFG_MODE}), ${PROMPT} prompt tokens\n`,
    );
    const totals = { loadedMib: 0, activationMib: 0, turnMib: 0 };
    for (const component of components) {
      const n = Number(component === "transformer" ? values.blocks : values.layers);
      const full = component === "transformer" ? TRANSFORMER.layers : TEXT.layers;
      const bytes = await build(component, n, `${root}/${component}`);
      const base = await build(component, 0, `${root}/${component}-0`);
      const perBlock = (bytes - base) / n;
      // The real embedding table: float32 at every dtype but fp16 (the builder's rule).
      const embedding = component === "text_encoder"
        ? (TEXT.vocabSize - BENCH_VOCAB) * TEXT.hiddenSize * (DTYPE === "fp16" ? 2 : 4)
        : 0;
      const fullBytes = base + embedding + perBlock * full;
      // The 0-block graph: what the process, the runtime and the layers outside the blocks cost.
      const r0 = await measure(component, `${root}/${component}-0`);
      const r = await measure(component, `${root}/${component}`);
      // RSS a block adds once loaded (the weights and what the runtime makes of them).
      const loadedPerBlock = (r.loadedMib - r0.loadedMib) / n;
      const loadedFull = r0.loadedMib + embedding / MIB + loadedPerBlock * full;
      const activationMib = Math.max(...r.runs.map((x: { peakMib: number }) => x.peakMib)) -
        r.loadedMib;
      totals.loadedMib += loadedFull;
      totals.activationMib = Math.max(totals.activationMib, activationMib);
      totals.turnMib = Math.max(totals.turnMib, loadedFull + activationMib);
      const reopenFull = r0.reopenS + (r.reopenS - r0.reopenS) / n * full;
      console.log(
        `## ${component}: ${n} of ${full} blocks built, ${formatBytes(bytes)} of weights ` +
          `(${formatBytes(perBlock)} a block, ${formatBytes(base)} outside the blocks` +
          (embedding ? `, + ${formatBytes(embedding)} of real embedding not built` : "") + ")\n",
      );
      for (const [label, x] of [["0 blocks", r0], [`${n} blocks`, r]]) {
        console.log(
          `- ${label}: load ${x.loadS.toFixed(1)} s; peak RSS while loading ${
            x.loadPeakMib.toFixed(0)
          } MiB; RSS loaded ${x.loadedMib.toFixed(0)} MiB (${
            x.loadedFileMib.toFixed(0)
          } MiB of it file pages)`,
        );
      }
      console.log(
        `- RSS loaded a block: ${loadedPerBlock.toFixed(1)} MiB (${
          (loadedPerBlock / (perBlock / MIB)).toFixed(2)
        }× its weights)`,
      );
      r.runs.forEach(
        (run: { size: number; forwardS: number; cpuS: number; peakMib: number }, i: number) => {
          const what = component === "transformer"
            ? `${run.size}² (${(run.size / 16) ** 2} image tokens)`
            : `${PROMPT + TEMPLATE_TOKENS} tokens`;
          const wall = (run.forwardS - r0.runs[i].forwardS) / n;
          const cpu = (run.cpuS - r0.runs[i].cpuS) / n;
          console.log(
            `- forward at ${what}: ${run.forwardS.toFixed(2)} s, CPU ${run.cpuS.toFixed(1)} s ` +
              `(0 blocks: ${r0.runs[i].forwardS.toFixed(2)} s, CPU ${
                r0.runs[i].cpuS.toFixed(1)
              } s); ` +
              `a block ${wall.toFixed(2)} s, CPU ${cpu.toFixed(2)} s → ${full} blocks ${
                (wall * full).toFixed(0)
              } s, CPU ${(cpu * full).toFixed(0)} s; peak RSS ${run.peakMib.toFixed(0)} MiB (${
                (run.peakMib - r.loadedMib).toFixed(0)
              } MiB over loaded)`,
          );
        },
      );
      console.log(
        `- closed and trimmed: RSS ${r.releasedMib.toFixed(0)} MiB; opened again in ${
          r.reopenS.toFixed(1)
        } s (0 blocks: ${r0.reopenS.toFixed(1)} s; a fresh process's first open: ${
          r.loadS.toFixed(1)
        } s)`,
      );
      console.log(
        `- full model: ${formatBytes(fullBytes)} of weights; loaded ≈ ${
          formatBytes(loadedFull * MIB)
        }; peak ≈ ${formatBytes((loadedFull + activationMib) * MIB)}; reopen ≈ ${
          reopenFull.toFixed(0)
        } s\n`,
      );
    }
    if (components.length === 2) {
      const { loadedMib, activationMib, turnMib } = totals;
      console.log(
        `## both in one process: loaded ≈ ${formatBytes(loadedMib * MIB)}; peak while denoising ≈ ${
          formatBytes((loadedMib + activationMib) * MIB)
        }; with --enable-cpu-offload (taking turns) peak ≈ ${
          formatBytes(turnMib * MIB)
        } (the VAE not counted)`,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
