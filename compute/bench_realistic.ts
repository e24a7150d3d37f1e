/**
 * `deno task bench:realistic [--size 64] [--devices cpu,wasm]`: a network with SD-1.5's UNet
 * architecture and widths (859.5 M parameters, random weights, built by
 * `fixtures/builder/sd_unet.ts` at bench time into a temporary folder, never committed), run as
 * the Optimum interface's batch-2 (CFG) forward at 64² latents (512² images), 77 text tokens. Prints
 * per backend: time per forward, GFLOP/s, the fraction of a GEMM peak measured in the same run
 * (one 2048³ MatMul on the same backend), and the peak RSS against the weights' bytes. Each backend
 * runs in its own process. Takes minutes.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SD15_UNET, sdUnet } from "../fixtures/builder/sd_unet.ts";
import { GraphBuilder } from "../fixtures/builder/onnx_builder.ts";
import type { DeviceName } from "./backends/backend.ts";
import { selectBackend } from "./backends/device.ts";
import { median, peakRssMib } from "./bench_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "64" },
    widths: { type: "string", default: SD15_UNET.blockOutChannels.join(",") },
    devices: { type: "string", default: "cpu,wasm" },
    child: { type: "string" },
    dir: { type: "string" },
  },
});
const SIZE = Number(values.size);
/** `--widths` scales the network (e.g. 160,320,640,640: a quarter of the weights, fits WASM). */
const CONFIG = { ...SD15_UNET, blockOutChannels: values.widths!.split(",").map(Number) };
const BATCH = 2, SEQUENCE = 77, GEMM = 2048;

async function timeRuns(run: () => Promise<void>, runs: number): Promise<number> {
  await run(); // warm-up
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return median(times);
}

if (values.child) {
  // One backend: the GEMM peak, then the UNet forward.
  const device = values.child as DeviceName;
  const backend = await selectBackend(device);
  const mm = new GraphBuilder("gemm", 1);
  mm.input("A", "float32", [GEMM, GEMM]);
  mm.input("B", "float32", [GEMM, GEMM]);
  mm.op("MatMul", ["A", "B"], {}, "C");
  mm.output("C", "float32", [GEMM, GEMM]);
  const gemm = await backend.createSession({ bytes: mm.serialize().model });
  const ones = new Float32Array(GEMM * GEMM).fill(0.5);
  const gemmMs = await timeRuns(async () => {
    const out = await gemm.run({
      A: backend.tensor("float32", ones, [GEMM, GEMM]),
      B: backend.tensor("float32", ones, [GEMM, GEMM]),
    });
    out.C.dispose();
  }, 3);
  await gemm.release();
  const gemmGflops = 2 * GEMM ** 3 / gemmMs / 1e6;
  const result: Record<string, unknown> = { device, description: backend.description, gemmGflops };
  try {
    const dir = values.dir!;
    const session = await backend.createSession({
      path: `${dir}/model.onnx`,
      externalDataPath: `${dir}/model.onnx_data`,
    });
    const h = SIZE;
    const sample = new Float32Array(BATCH * 4 * h * h).fill(0.3);
    const context = new Float32Array(BATCH * SEQUENCE * SD15_UNET.crossAttentionDim).fill(0.01);
    result.forwardMs = await timeRuns(async () => {
      const out = await session.run({
        sample: backend.tensor("float32", sample, [BATCH, 4, h, h]),
        timestep: backend.tensor("float32", Float32Array.of(500, 500), [BATCH]),
        encoder_hidden_states: backend.tensor("float32", context, [
          BATCH,
          SEQUENCE,
          SD15_UNET.crossAttentionDim,
        ]),
      });
      await out.out_sample.getData();
      out.out_sample.dispose();
    }, 2);
    await session.release();
  } catch (e) {
    result.error = (e as Error).message.replace(/\s+/g, " ").slice(0, 200);
  }
  result.peakMib = await peakRssMib();
  console.log(JSON.stringify(result));
} else {
  const dir = await Deno.makeTempDir({ prefix: "denoise-sd15-unet-" });
  try {
    let t = performance.now();
    const { graph, cost } = sdUnet(CONFIG, 1515, SIZE, BATCH, SEQUENCE);
    const { model, externalData } = graph.serialize({ externalData: "model.onnx_data" });
    await Deno.writeFile(`${dir}/model.onnx`, model);
    await Deno.writeFile(`${dir}/model.onnx_data`, externalData!);
    const buildS = (performance.now() - t) / 1000;
    const weightMib = externalData!.length / 2 ** 20;
    const gflop = 2 * (cost.convMacs + cost.linearMacs + cost.attentionMacs) / 1e9;
    console.log(
      `# Realistic-width benchmark: SD-1.5's UNet architecture, widths ${values.widths}\n`,
    );
    console.log(
      `${(cost.parameters / 1e6).toFixed(1)} M parameters, ${weightMib.toFixed(0)} MiB float32 ` +
        `(built in ${buildS.toFixed(0)} s), random weights. Forward: batch ${BATCH} (CFG), ` +
        `${SIZE}² latents (${SIZE * 8}² images), ${SEQUENCE} tokens: ${gflop.toFixed(0)} GFLOP ` +
        `(convolutions ${(2 * cost.convMacs / 1e9).toFixed(0)}, Linear ${
          (2 * cost.linearMacs / 1e9).toFixed(0)
        }, attention QKᵀ/AV ${(2 * cost.attentionMacs / 1e9).toFixed(0)}).\n`,
    );
    console.log(
      "| backend | GEMM peak GFLOP/s (2048³) | forward s | GFLOP/s | of GEMM peak | peak RSS MiB | peak RSS / weights |",
    );
    console.log("|---|---|---|---|---|---|---|");
    for (const device of values.devices!.split(",")) {
      t = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL(import.meta.url).pathname,
          "--child",
          device,
          "--dir",
          dir,
          "--size",
          String(SIZE),
          "--widths",
          values.widths!,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
      let r: Record<string, number | string>;
      try {
        r = JSON.parse(text);
      } catch {
        const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
        console.log(`| ${device} | – | failed: ${err?.slice(0, 120)} | | | | |`);
        continue;
      }
      const peak = Number(r.peakMib);
      if (r.error) {
        console.log(
          `| ${r.description} | ${Number(r.gemmGflops).toFixed(1)} | failed: ${r.error} | | | ${
            peak.toFixed(0)
          } | |`,
        );
        continue;
      }
      const seconds = Number(r.forwardMs) / 1000;
      const rate = gflop / seconds;
      console.log(
        `| ${r.description} | ${Number(r.gemmGflops).toFixed(1)} | ${seconds.toFixed(2)} | ${
          rate.toFixed(1)
        } | ${(rate / Number(r.gemmGflops)).toFixed(2)} | ${peak.toFixed(0)} | ${
          (peak / weightMib).toFixed(2)
        } |`,
      );
    }
    console.log(
      `\nCommand: \`deno task bench:realistic --size ${SIZE} --widths ${values.widths} --devices ${values.devices}\`.`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
