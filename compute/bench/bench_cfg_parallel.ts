/**
 * `deno task bench:cfg-parallel [--runs 5]`: the three ways the server can run a step's guided
 * batch of 2 (../pipelines/row_calls.ts, as the server wires them): one call of both rows on one
 * session with every core (`--cfg-mode batch`), one row a call on that session
 * (`--cfg-mode sequential`), and the two rows at the same time on two sessions with half the cores
 * each (`--cfg-parallel-size 2`, what CFG parallelism is on one CPU); and whether the latter two
 * give the batch's bytes. On the embedded shapes-tiny UNet at 32² latents, and on a quarter-width
 * SD-1.5 UNet (160, 320, 640, 640; random weights, built into a temporary folder) at 64² latents.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Backend, Session } from "../backends/backend.ts";
import { readFloat32 } from "../backends/backend.ts";
import { selectBackend } from "../backends/device.ts";
import { SD15_UNET, sdUnet } from "../networks/sd_unet.ts";
import { median } from "./bench_stats.ts";
import { rowCalls } from "../pipelines/row_calls.ts";

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
  const single = await open(whole);
  const batched = rowCalls([single], whole, "batch");
  const sequential = rowCalls([single], whole, "sequential");
  const parallel = rowCalls([await open(half), await open(half)], half, "batch");
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
  const s = await timed(() => run(sequential, feeds(whole, [0, 1])));
  const p = await timed(() => run(parallel, feeds(half, [0, 1])));
  const versus = (b: { out: Float32Array }) => {
    let differ = 0, maxDiff = 0;
    for (let i = 0; i < a.out.length; i++) {
      if (a.out[i] !== b.out[i]) differ++;
      maxDiff = Math.max(maxDiff, Math.abs(a.out[i] - b.out[i]));
    }
    return differ === 0
      ? "identical"
      : `${differ} of ${a.out.length} differ (max ${maxDiff.toExponential(1)})`;
  };
  console.log(
    `| ${c.label} | ${a.ms.toFixed(1)} | ${s.ms.toFixed(1)} (${(a.ms / s.ms).toFixed(2)}×) | ${
      p.ms.toFixed(1)
    } (${(a.ms / p.ms).toFixed(2)}×) | ${versus(s)} | ${versus(p)} |`,
  );
  await single.release();
  await parallel.release();
}

console.log(
  `# A guided batch of 2 on one CPU (${cores} cores): one call on ${cores} threads, one row a call, or two sessions of ${
    cores >> 1
  } thread(s) at once; median of ${RUNS} runs; speed-ups over the batch\n`,
);
console.log(
  "| UNet | batch: ms | sequential: ms | parallel (2 sessions): ms | sequential's outputs | parallel's outputs |",
);
console.log("| ---- | --------- | -------------- | ------------------------- | ---- | ---- |");
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
