/**
 * `deno task bench [--devices cpu,wasm,webgpu] [--steps 8]`: for the sd-turbo-tiny fixture at 64²,
 * 256² and 512², the median time of each stage per backend, and the ratio of our denoising step to
 * a bare `session.run` of the same UNet graph on the same inputs (orchestration overhead). Then
 * a 256 MB hub download over loopback against a bare fetch.
 * Prints markdown.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { DeviceName, Session } from "../backends/backend.ts";
import { probeWebGpu, selectBackend } from "../backends/device.ts";
import { encodeImages } from "../image/encode.ts";
import { folderGraphs } from "../model/model_folder.ts";
import { StableDiffusionPipeline } from "../families/stable_diffusion/stable_diffusion.ts";
import { torchRandn } from "../random.ts";
import { downloadSnapshot, hubSettings, planDownload } from "../model/hub_download.ts";
import { startFakeHub } from "../../fixtures/fake_hub.ts";
import { median } from "./bench_stats.ts";

const MODEL = new URL("../../fixtures/models/sd-turbo-tiny", import.meta.url).pathname;
const SIZES = [64, 256, 512];

const ms = (x: number) => x < 10 ? x.toFixed(2) : x.toFixed(1);

async function timeBareRun(
  unet: Session,
  device: DeviceName,
  size: number,
  runs: number,
): Promise<number> {
  const backend = await selectBackend(device);
  const h = size / 8;
  const feeds = () => ({
    sample: backend.tensor("float16", torchRandn([1, 4, h, h], 0), [1, 4, h, h]),
    timestep: backend.tensor("float16", Float32Array.of(999), []),
    encoder_hidden_states: backend.tensor("float16", torchRandn([1, 77, 32], 1), [1, 77, 32]),
  });
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const f = feeds();
    const t = performance.now();
    const out = await unet.run(f);
    await out.out_sample.getData();
    if (i > 0) times.push(performance.now() - t); // the first run warms up
    out.out_sample.dispose();
  }
  return median(times);
}

const args = parseArgs({
  args: Deno.args,
  options: { devices: { type: "string" }, steps: { type: "string", default: "8" } },
});
const steps = Number(args.values.steps);
const gpu = await probeWebGpu();
const devices = (args.values.devices?.split(",") ??
  ["cpu", "wasm", ...(gpu?.shaderF16 ? ["webgpu"] : [])]) as DeviceName[];

console.log(`# denoise compute benchmark\n`);
console.log(`Model: the sd-turbo-tiny fixture, ${steps} Euler steps, batch 1, no CFG.`);
console.log(
  `WebGPU adapter: ${gpu ? gpu.description : "none"}. Medians; step medians exclude step 0.\n`,
);
console.log(
  "| backend | size | tokenize ms | text encode ms | step ms (ours) | step ms (bare run) | ratio | decode ms | PNG encode ms | total ms |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const device of devices) {
  const backend = await selectBackend(device);
  const pipeline = await StableDiffusionPipeline.load(folderGraphs(MODEL, backend));
  const bareUnet = await folderGraphs(MODEL, backend).open("unet");
  for (const size of SIZES) {
    await pipeline.generate({ prompt: "warm up", width: size, height: size, steps: 1, seed: 0 });
    const r = await pipeline.generate({
      prompt: "a dragon over green mountains",
      width: size,
      height: size,
      steps,
      seed: 42,
    });
    await encodeImages(r, "png");
    const encodeMs = r.timings.encodeMs!;
    const ours = median(r.timings.stepMs.slice(1));
    const bare = await timeBareRun(bareUnet, device, size, steps);
    console.log(
      `| ${backend.description} | ${size}² | ${ms(r.timings.tokenizeMs)} | ${
        ms(r.timings.textEncodeMs)
      } | ${ms(ours)} | ${ms(bare)} | ${(ours / bare).toFixed(3)} | ${ms(r.timings.decodeMs)} | ${
        ms(encodeMs)
      } | ${ms(r.timings.totalMs + encodeMs)} |`,
    );
  }
  await bareUnet.release();
  await pipeline.release();
}

// Hub download over loopback (the fake hub): our streaming, hashing and writing against a bare
// fetch of the same bytes, so the ratio shows what verification and resumability cost.
const big = new Uint8Array(256 * 1024 * 1024);
for (let i = 0; i < big.length; i += 4096) big[i] = i & 255;
{
  await using hub = await startFakeHub({
    repoId: "bench/model",
    fixture: "qwen-image-tiny",
    extraFiles: { "transformer/model.onnx_data": big },
  });
  const cache = await Deno.makeTempDir({ prefix: "bench-hub-" });
  const settings = await hubSettings((n) => n === "HF_ENDPOINT" ? hub.url : undefined);
  const plan = await planDownload("bench/model", cache, settings);
  let t = performance.now();
  const response = await fetch(`${hub.url}/bench/model/resolve/main/transformer/model.onnx_data`);
  for await (const _ of response.body!) { /* drain */ }
  const bareS = (performance.now() - t) / 1000;
  t = performance.now();
  await downloadSnapshot(plan, settings);
  const oursS = (performance.now() - t) / 1000;
  await Deno.remove(cache, { recursive: true });
  const mbps = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(0);
  console.log(`\n| hub download (loopback, ${(plan.totalBytes / 1e6).toFixed(0)} MB) | s | MB/s |`);
  console.log(`|---|---|---|`);
  console.log(`| bare fetch, body drained | ${bareS.toFixed(2)} | ${mbps(big.length, bareS)} |`);
  console.log(
    `| downloadSnapshot (SHA-256, to disk, linked) | ${oursS.toFixed(2)} | ${
      mbps(plan.totalBytes, oursS)
    } |`,
  );
}
