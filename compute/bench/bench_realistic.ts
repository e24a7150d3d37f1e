/**
 * `deno task bench:realistic [--size 64] [--devices cpu,wasm] [--stages unet,vae,dit]
 * [--attention exported,fused] [--widths …] [--blocks 2] [--dtypes fp32,fp16,q8,q4] [--batch 2]`: networks with SD-1.5's architecture and widths
 * (UNet: 859.5 M parameters; VAE decoder: 49.5 M), and two of Z-Image's DiT blocks (362 M),
 * random weights, built by `compute/networks/sd_unet.ts`, `sd_vae.ts` and `z_image_dit.ts` at bench
 * time into a temporary folder, never committed. The UNet runs the Optimum interface's batch-2
 * (CFG) forward (`--batch 1`: one of the two calls `--cfg-mode sequential` makes) at 64² latents (512² images) with 77 text tokens, the decoder one image, the DiT a
 * 512² image's 1024 patches and 128 caption tokens (Z-Image-Turbo runs without CFG). Prints per stage, backend and attention
 * (fused into `MultiHeadAttention` at load, or as exported): time per forward, GFLOP/s, the
 * fraction of a GEMM peak measured in the same process (the best of five 2048³ MatMuls on the same
 * backend),
 * the peak RSS against the fp32 weights' bytes (and without what the process held before loading
 * the model), the resident set's anonymous and file pages before loading, loaded and after the
 * forwards, how far the fused output is from the exported one,
 * and, per `--dtypes` (the weights written by the converter's path: `random_weights.ts`, the same
 * values at every dtype), time against fp32's and the output's largest difference from fp32's
 * relative to fp32's largest value. Each measurement runs in its own process. Takes minutes.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SD15_UNET, sdUnet } from "../networks/sd_unet.ts";
import { SD15_VAE, sdVaeDecoder } from "../networks/sd_vae.ts";
import { Z_IMAGE_DIT as DIT_DEFAULT, zImageDit } from "../networks/z_image_dit.ts";
import { GraphBuilder, WEIGHT_DTYPES, type WeightDtype } from "../graph/onnx_builder.ts";
import { randomWeights } from "./random_weights.ts";
import type { LayerCost } from "../graph/torch_layers.ts";
import type { Backend, DeviceName, Tensor } from "../backends/backend.ts";
import { selectBackend } from "../backends/device.ts";
import { median, peakRssMib, rssMib } from "./bench_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "64" },
    widths: { type: "string", default: SD15_UNET.blockOutChannels.join(",") },
    blocks: { type: "string", default: String(DIT_DEFAULT.blocks) },
    batch: { type: "string", default: "2" },
    devices: { type: "string", default: "cpu,wasm" },
    stages: { type: "string", default: "unet,vae,dit" },
    attention: { type: "string", default: "exported,fused" },
    dtypes: { type: "string", default: "fp32" },
    dtype: { type: "string" },
    child: { type: "string" },
    stage: { type: "string" },
    fused: { type: "boolean" },
    dir: { type: "string" },
  },
});
const SIZE = Number(values.size);
/** `--widths` scales the UNet (e.g. 160,320,640,640: a quarter of the weights, fits WASM). */
const UNET = { ...SD15_UNET, blockOutChannels: values.widths!.split(",").map(Number) };
const BATCH = Number(values.batch), SEQUENCE = 77, GEMM = 2048;
if (BATCH !== 1 && BATCH !== 2) throw new Error(`--batch: ${values.batch} is not 1 or 2`);
/** The DiT's tokens: the image's 2×2 patches of the latents, then a 128-token caption. */
const DIT_TOKENS = (SIZE / 2) ** 2 + 128;
/** `--blocks`: the DiT's block count (how memory grows a block). */
const Z_IMAGE_DIT = { ...DIT_DEFAULT, blocks: Number(values.blocks) };
const DIT_HEAD = Z_IMAGE_DIT.dim / Z_IMAGE_DIT.heads;
type Stage = "unet" | "vae" | "dit";
const DTYPES = values.dtypes!.split(",") as WeightDtype[];
const unknown = DTYPES.find((d) => !WEIGHT_DTYPES.includes(d));
if (unknown) throw new Error(`--dtypes: ${unknown} is not one of ${WEIGHT_DTYPES.join(", ")}`);

/** What a stage feeds its graph, and what it is called. */
const STAGES: Record<Stage, { label: string; feeds: (b: Backend) => Record<string, Tensor> }> = {
  unet: {
    label: `UNet, batch ${BATCH}`,
    feeds: (b) => ({
      sample: b.tensor("float32", wave(BATCH * 4 * SIZE * SIZE, 0.3), [BATCH, 4, SIZE, SIZE]),
      timestep: b.tensor("float32", new Float32Array(BATCH).fill(500), [BATCH]),
      encoder_hidden_states: b.tensor(
        "float32",
        wave(BATCH * SEQUENCE * UNET.crossAttentionDim, 0.5),
        [BATCH, SEQUENCE, UNET.crossAttentionDim],
      ),
    }),
  },
  vae: {
    label: "VAE decoder, 1 image",
    feeds: (b) => ({
      latent_sample: b.tensor("float32", wave(4 * SIZE * SIZE, 1), [1, 4, SIZE, SIZE]),
    }),
  },
  dit: {
    label: `Z-Image DiT, ${Z_IMAGE_DIT.blocks} blocks, batch 1`,
    feeds: (b) => ({
      hidden_states: b.tensor("float32", wave(DIT_TOKENS * Z_IMAGE_DIT.dim, 1), [
        1,
        DIT_TOKENS,
        Z_IMAGE_DIT.dim,
      ]),
      adaln_input: b.tensor("float32", wave(Z_IMAGE_DIT.adalnWidth, 0.5), [
        1,
        Z_IMAGE_DIT.adalnWidth,
      ]),
      rope_cos: b.tensor("float32", wave(DIT_TOKENS * DIT_HEAD, 1).map(Math.cos), [
        DIT_TOKENS,
        1,
        DIT_HEAD,
      ]),
      rope_sin: b.tensor("float32", wave(DIT_TOKENS * DIT_HEAD, 1).map(Math.sin), [
        DIT_TOKENS,
        1,
        DIT_HEAD,
      ]),
    }),
  },
};

/** Deterministic, varied inputs (a constant input would hide a wrong attention). */
function wave(n: number, amplitude: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => amplitude * Math.sin(i * 0.37));
}

/** Times of `runs` runs after a warm-up. */
async function timeRuns(run: () => Promise<void>, runs: number): Promise<number[]> {
  await run();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return times;
}

async function gemmPeak(backend: Backend): Promise<number> {
  const mm = new GraphBuilder("gemm", 1);
  mm.input("A", "float32", [GEMM, GEMM]);
  mm.input("B", "float32", [GEMM, GEMM]);
  mm.op("MatMul", ["A", "B"], {}, "C");
  mm.output("C", "float32", [GEMM, GEMM]);
  const gemm = await backend.createSession({ bytes: mm.serialize().model });
  const ones = new Float32Array(GEMM * GEMM).fill(0.5);
  // The peak is the best run: noise only ever slows a run down.
  const gemmMs = Math.min(
    ...await timeRuns(async () => {
      const out = await gemm.run({
        A: backend.tensor("float32", ones, [GEMM, GEMM]),
        B: backend.tensor("float32", ones, [GEMM, GEMM]),
      });
      out.C.dispose();
    }, 5),
  );
  await gemm.release();
  return 2 * GEMM ** 3 / gemmMs / 1e6;
}

if (values.child) {
  // One backend, one stage, one attention: the stage's forward, then the GEMM peak.
  const device = values.child as DeviceName;
  const stage = values.stage as Stage;
  const backend = await selectBackend(device, { fuseAttention: values.fused === true });
  const result: Record<string, unknown> = {
    device,
    description: backend.description,
  };
  try {
    const dir = `${values.dir}/${stage}-${values.dtype}`;
    result.before = await rssMib();
    const session = await backend.createSession({
      path: `${dir}/model.onnx`,
      externalDataPath: `${dir}/model.onnx_data`,
    });
    result.loaded = await rssMib();
    let output: Float32Array | undefined;
    result.forwardMs = median(
      await timeRuns(async () => {
        const out = Object.values(await session.run(STAGES[stage].feeds(backend)))[0];
        output = await out.getData() as Float32Array;
        out.dispose();
      }, 2),
    );
    result.ran = await rssMib();
    await session.release();
    await Deno.writeFile(
      `${values.dir}/${stage}-${values.dtype}-${device}-${values.fused ? "fused" : "exported"}.f32`,
      new Uint8Array(output!.buffer, output!.byteOffset, output!.byteLength),
    );
  } catch (e) {
    result.error = (e as Error).message.replaceAll(values.dir!, "…").replace(/\s+/g, " ")
      .slice(0, 200);
  }
  result.peakMib = await peakRssMib();
  // After the peak is read: the probe's 2048² matrices are not the model's memory (malloc kept
  // 100+ MiB of them when it ran first).
  result.gemmGflops = await gemmPeak(backend);
  console.log(JSON.stringify(result));
} else {
  const dir = await Deno.makeTempDir({ prefix: "denoise-sd15-" });
  try {
    console.log(
      `# Realistic-width benchmark: SD-1.5's architectures, UNet widths ${values.widths}\n`,
    );
    const stages = values.stages!.split(",") as Stage[];
    const built = new Map<string, { cost: LayerCost; weightMib: number }>();
    // Every run first, then the table: each fraction is taken against the best GEMM peak its
    // backend reached anywhere in this run (noise only slows a measurement down).
    const runs: {
      stage: Stage;
      dtype: WeightDtype;
      device: string;
      attention: string;
      r: Record<string, unknown>;
      fusedDiff: string;
      fp32Diff: string;
    }[] = [];
    for (const stage of stages) {
      for (const dtype of DTYPES) {
        const model = `${dir}/${stage}-${dtype}`;
        await Deno.mkdir(model);
        const t = performance.now();
        const weights = randomWeights(`${model}/model.onnx_data`, "model.onnx_data", dtype, 1515);
        const { graph, cost } = stage === "unet"
          ? sdUnet(UNET, 1515, SIZE, BATCH, SEQUENCE, weights)
          : stage === "vae"
          ? sdVaeDecoder(SD15_VAE, 1516, SIZE, 1, weights)
          : zImageDit(Z_IMAGE_DIT, 1517, DIT_TOKENS, 1, weights);
        await Deno.writeFile(
          `${model}/model.onnx`,
          graph.serialize({ externalData: "model.onnx_data" }).model,
        );
        weights.close();
        const weightMib = (await Deno.stat(`${model}/model.onnx_data`)).size / 2 ** 20;
        built.set(`${stage}-${dtype}`, { cost, weightMib });
        const gflop = (macs: number) => (2 * macs / 1e9).toFixed(0);
        console.log(
          `- ${STAGES[stage].label}, ${dtype}: ${
            (cost.parameters / 1e6).toFixed(1)
          } M parameters, ${weightMib.toFixed(0)} MiB of weights (built in ${
            ((performance.now() - t) / 1000).toFixed(0)
          } s); ${
            stage === "dit"
              ? `${DIT_TOKENS} tokens (a ${
                SIZE * 8
              }² image's 2×2 latent patches and 128 caption tokens)`
              : `${SIZE}² latents (${SIZE * 8}² images)`
          }${stage === "unet" ? `, ${SEQUENCE} tokens` : ""}: ${
            gflop(cost.convMacs + cost.linearMacs + cost.attentionMacs)
          } GFLOP (convolutions ${gflop(cost.convMacs)}, Linear ${gflop(cost.linearMacs)}, ` +
            `attention QKᵀ/AV ${gflop(cost.attentionMacs)}).`,
        );
        for (const device of values.devices!.split(",")) {
          // WASM never fuses (its kernel overflows at large sizes: backends/onnxruntime_web.ts);
          // the DiT is exported fused already, so it has one row per backend.
          const modes = device === "wasm" || stage === "dit"
            ? ["exported"]
            : values.attention!.split(",");
          for (const attention of modes) {
            const r = await runChild(dir, stage, dtype, device, attention === "fused");
            const ok = "forwardMs" in r;
            const fusedDiff = attention === "fused" && modes.includes("exported") && ok
              ? await difference(dir, `${stage}-${dtype}-${device}`, "exported", "fused")
              : "";
            const fp32Diff = dtype !== "fp32" && ok
              ? await difference(dir, `${stage}-*-${device}-${attention}`, "fp32", dtype)
              : "";
            runs.push({ stage, dtype, device, attention, r, fusedDiff, fp32Diff });
          }
        }
        // Only the outputs are kept: the fp32 UNet alone is 3.2 GiB on disk.
        await Deno.remove(model, { recursive: true });
      }
    }
    const peaks = new Map<string, number>();
    for (const { device, r } of runs) {
      peaks.set(device, Math.max(peaks.get(device) ?? 0, Number(r.gemmGflops ?? 0)));
    }
    console.log(
      "\n| stage | dtype | backend | attention | GEMM peak GFLOP/s (2048³, this process) | forward s | ÷ fp32's | GFLOP/s (fp32's FLOPs) | of the run's GEMM peak | weights MiB | peak RSS MiB | peak RSS / fp32 weights | RSS MiB, anonymous + file: before loading / loaded / after the forwards | (peak − before loading) / fp32 weights | fused vs exported: max abs diff (of max abs) | vs fp32: max abs diff / fp32's max abs |",
    );
    console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    const fp32Of = (stage: Stage, device: string, attention: string) =>
      runs.find((o) =>
        o.stage === stage && o.dtype === "fp32" && o.device === device &&
        o.attention === attention && "forwardMs" in o.r
      );
    const targets: string[] = [];
    for (const { stage, dtype, device, attention, r, fusedDiff, fp32Diff } of runs) {
      const { cost, weightMib } = built.get(`${stage}-${dtype}`)!;
      const fp32Mib = built.get(`${stage}-fp32`)?.weightMib;
      const gflop = 2 * (cost.convMacs + cost.linearMacs + cost.attentionMacs) / 1e9;
      const peak = r.peakMib === undefined ? undefined : Number(r.peakMib);
      const shown = stage === "dit" ? "fused in the export" : attention;
      const head = [STAGES[stage].label, dtype, String(r.description ?? device), shown];
      if (!("forwardMs" in r)) {
        const cells = [num(r.gemmGflops), `failed: ${r.error}`, "", "", "", weightMib.toFixed(0)];
        console.log(
          `| ${[...head, ...cells, peak?.toFixed(0) ?? "", "", "", "", "", ""].join(" | ")} |`,
        );
        continue;
      }
      const seconds = Number(r.forwardMs) / 1000, rate = gflop / seconds;
      const base = fp32Of(stage, device, attention);
      const timeRatio = base ? Number(r.forwardMs) / Number(base.r.forwardMs) : undefined;
      const rssRatio = fp32Mib === undefined ? undefined : peak! / fp32Mib;
      const split = (m: unknown) => {
        const { anon, file } = m as { anon: number; file: number };
        return `${anon.toFixed(0)} + ${file.toFixed(0)}`;
      };
      const before = r.before as { anon: number; file: number };
      const cells = [
        num(r.gemmGflops),
        seconds.toFixed(2),
        timeRatio?.toFixed(2) ?? "–",
        rate.toFixed(1),
        (rate / peaks.get(device)!).toFixed(2),
        weightMib.toFixed(0),
        peak!.toFixed(0),
        rssRatio?.toFixed(2) ?? "–",
        [r.before, r.loaded, r.ran].map(split).join(" / "),
        fp32Mib === undefined ? "–" : ((peak! - before.anon - before.file) / fp32Mib).toFixed(2),
        fusedDiff,
        fp32Diff,
      ];
      console.log(`| ${[...head, ...cells].join(" | ")} |`);
      if (dtype === "q4" && device === "cpu" && timeRatio !== undefined && rssRatio !== undefined) {
        const met = rssRatio <= 0.3 && timeRatio <= 1.2;
        targets.push(
          `- ${STAGES[stage].label}, ${attention}: q4 peak RSS ${rssRatio.toFixed(2)}× fp32's ` +
            `weights (target ≤ 0.3), time ${timeRatio.toFixed(2)}× fp32's (target ≤ 1.2): ` +
            (met ? "met." : "not met."),
        );
      }
    }
    if (targets.length) console.log(`\nTargets (native CPU):\n${targets.join("\n")}`);
    console.log(
      `\nCommand: \`deno task bench:realistic --size ${SIZE} --widths ${values.widths} --blocks ${values.blocks} --devices ${values.devices} --stages ${values.stages} --attention ${values.attention} --dtypes ${values.dtypes}${
        BATCH === 2 ? "" : ` --batch ${BATCH}`
      }\`.`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function num(x: unknown): string {
  return x === undefined ? "–" : Number(x).toFixed(1);
}

async function runChild(
  dir: string,
  stage: Stage,
  dtype: WeightDtype,
  device: string,
  fused: boolean,
): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      ...["--child", device, "--stage", stage, "--dtype", dtype, "--dir", dir],
      ...["--size", String(SIZE), "--widths", values.widths!, "--blocks", values.blocks!],
      ...["--batch", String(BATCH)],
      ...fused ? ["--fused"] : [],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(text);
  } catch {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    return { error: err.slice(0, 120) };
  }
}

/**
 * The largest difference of output `b` from output `a` (`run` names both, `*` standing for either
 * where they differ in the name's middle, else they are its last part), and `a`'s largest.
 */
async function difference(dir: string, run: string, a: string, b: string): Promise<string> {
  const file = (kind: string) =>
    `${dir}/${run.includes("*") ? run.replace("*", kind) : `${run}-${kind}`}.f32`;
  try {
    const read = async (kind: string) => new Float32Array((await Deno.readFile(file(kind))).buffer);
    const [reference, other] = [await read(a), await read(b)];
    let diff = 0, scale = 0;
    reference.forEach((x, i) => {
      diff = Math.max(diff, Math.abs(x - other[i]));
      scale = Math.max(scale, Math.abs(x));
    });
    return `${diff.toExponential(1)} (of ${scale.toFixed(2)})` +
      (run.includes("*") ? `: ${(diff / scale).toExponential(1)}` : "");
  } catch {
    return `(run ${a} first)`;
  }
}
