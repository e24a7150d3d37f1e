/**
 * `deno task bench:cfg-parallel [--runs 5]`: what vLLM-Omni's `--cfg-parallel-size 2` would give
 * on this machine's CPU: one UNet call on the guided batch of 2 (today: one session, every core)
 * against its two branches at the same time on two sessions with half the cores each (what CFG
 * parallelism is on one CPU), and whether the two give the same bytes. On the embedded shapes-tiny
 * UNet at 32² latents, and on a quarter-width SD-1.5 UNet (160, 320, 640, 640; random weights,
 * built into a temporary folder) at 64² latents.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Backend, Session } from "../backends/backend.ts";
import { readFloat32 } from "../backends/backend.ts";
import { selectBackend } from "../backends/device.ts";
import { SD15_UNET, sdUnet } from "../networks/sd_unet.ts";
import { median } from "./bench_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "5" } },
});
const RUNS = Number(values.runs);
const cores = navigator.hardwareConcurrency;
const whole = await selectBackend("cpu", { threads: cores });
const half = await selectBackend("cpu", { threads: Math.max(1, cores >> 1) });

/** Deterministic, varied inputs. */
const wave = (n: number, a: number, phase: number) =>
  Float32Array.from({ length: n }, (_, i) => a * Math.sin(i * 0.37 + phase));

interface Case {
  label: string;
  path: string;
  externalDataPath?: string;
  channels: number;
  size: number;
  width: number;
}

async function measure(c: Case): Promise<void> {
  const open = (b: Backend) =>
    b.createSession({ path: c.path, externalDataPath: c.externalDataPath });
  const batched = await open(whole);
  const branches = [await open(half), await open(half)];
  const sample = c.channels * c.size * c.size;
  // A scalar where the graph declares one (shapes-tiny), else one per row.
  const scalar = batched.inputs.find((i) => i.name === "timestep")!.shape.length === 0;
  const timestepDims = (rows: number) => scalar ? [] : [rows];
  // Row 0: the unguided branch, row 1: the guided one (same latents, other text).
  const latents = wave(sample, 0.5, 0);
  const text = [wave(77 * c.width, 0.3, 1), wave(77 * c.width, 0.3, 2)];
  const feeds = (b: Backend, rows: number[]) => ({
    sample: b.tensor(
      "float32",
      new Float32Array(rows.length * sample).map((_, i) => latents[i % sample]),
      [
        rows.length,
        c.channels,
        c.size,
        c.size,
      ],
    ),
    timestep: b.tensor(
      "float32",
      new Float32Array(scalar ? 1 : rows.length).fill(500),
      timestepDims(rows.length),
    ),
    encoder_hidden_states: b.tensor(
      "float32",
      Float32Array.from(rows.flatMap((r) => [...text[r]])),
      [rows.length, 77, c.width],
    ),
  });
  const run = async (s: Session, f: ReturnType<typeof feeds>) => {
    const out = await s.run(f);
    const data = await readFloat32(out.out_sample);
    out.out_sample.dispose();
    return data;
  };
  const timed = async (fn: () => Promise<Float32Array>) => {
    let last = await fn();
    const ms = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      last = await fn();
      ms.push(performance.now() - t);
    }
    return { ms: median(ms), out: last };
  };
  const a = await timed(() => run(batched, feeds(whole, [0, 1])));
  const b = await timed(async () => {
    const [u, g] = await Promise.all([
      run(branches[0], feeds(half, [0])),
      run(branches[1], feeds(half, [1])),
    ]);
    const both = new Float32Array(u.length * 2);
    both.set(u);
    both.set(g, u.length);
    return both;
  });
  let differ = 0, maxDiff = 0;
  for (let i = 0; i < a.out.length; i++) {
    if (a.out[i] !== b.out[i]) differ++;
    maxDiff = Math.max(maxDiff, Math.abs(a.out[i] - b.out[i]));
  }
  console.log(
    `| ${c.label} | ${a.ms.toFixed(1)} | ${b.ms.toFixed(1)} | ${(a.ms / b.ms).toFixed(2)}× | ${
      differ === 0
        ? "identical"
        : `${differ} of ${a.out.length} differ (max ${maxDiff.toExponential(1)})`
    } |`,
  );
  for (const s of [batched, ...branches]) await s.release();
}

console.log(
  `# CFG in parallel on one CPU (${cores} cores): batch of 2 on ${cores} threads vs two batch-1 sessions on ${
    cores >> 1
  } thread(s) each at once; median of ${RUNS} runs\n`,
);
console.log("| UNet | batch of 2: ms | two branches at once: ms | speed-up | outputs |");
console.log("| ---- | -------------- | ------------------------ | -------- | ------- |");
const shapes = new URL("../../models/shapes-tiny/unet/model.onnx", import.meta.url).pathname;
await measure({
  label: "shapes-tiny, 32² latents",
  path: shapes,
  channels: 8,
  size: 32,
  width: 128,
});
const dir = await Deno.makeTempDir({ prefix: "denoise-cfg-bench-" });
try {
  const config = { ...SD15_UNET, blockOutChannels: [160, 320, 640, 640] };
  const { graph } = sdUnet(config, 1515, 64, 2);
  const { model, externalData } = graph.serialize({ externalData: "model.onnx_data" });
  await Deno.writeFile(`${dir}/model.onnx`, model);
  await Deno.writeFile(`${dir}/model.onnx_data`, externalData!);
  await measure({
    label: "SD-1.5 at quarter width, 64² latents",
    path: `${dir}/model.onnx`,
    externalDataPath: `${dir}/model.onnx_data`,
    channels: 4,
    size: 64,
    width: 768,
  });
} finally {
  await Deno.remove(dir, { recursive: true });
}
