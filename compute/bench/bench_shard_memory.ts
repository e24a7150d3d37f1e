/**
 * `deno run -A compute/bench/bench_shard_memory.ts [--blocks 8] [--dtype q4] [--shard-size 256M]
 * [--size 32] [--device cpu] [--load-only] [--compare-cpu]`: what opening a graph in shards (`--shard-size`,
 * `backends/sharding.ts`) costs and saves. Builds Z-Image's DiT at its real widths (dim 3840, FFN
 * 10240; `networks/z_image_dit.ts`) with `--blocks` blocks of random weights at `--dtype`
 * (`random_weights.ts`) into a temporary folder, then in a fresh process each opens it whole and
 * in shards: peak RSS while loading, RSS once loaded, one forward's time and peak RSS, and whether
 * the two outputs are the same bytes.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Z_IMAGE_DIT, zImageDit } from "../networks/z_image_dit.ts";
import { WEIGHT_DTYPES, type WeightDtype } from "../graph/onnx_builder.ts";
import { randomWeights } from "./random_weights.ts";
import { type DeviceName, formatBytes, parseShardSize } from "../backends/backend.ts";
import { probeWebGpu, selectBackend } from "../backends/device.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { createWebBackend } from "../backends/onnxruntime_web.ts";
import { peakRssMib } from "./bench_stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    blocks: { type: "string", default: "8" },
    dtype: { type: "string", default: "q4" },
    "shard-size": { type: "string", default: "256M" },
    size: { type: "string", default: "32" },
    device: { type: "string", default: "cpu" },
    /** Measure loading only (lavapipe takes minutes per real-width forward). */
    "load-only": { type: "boolean" },
    /** Also run the graph whole on native CPU, and give each output's distance from it. */
    "compare-cpu": { type: "boolean" },
    child: { type: "string" },
    dir: { type: "string" },
  },
});
const CONFIG = { ...Z_IMAGE_DIT, blocks: Number(values.blocks) };
const DTYPE = values.dtype as WeightDtype;
if (!WEIGHT_DTYPES.includes(DTYPE)) throw new Error(`--dtype must be one of ${WEIGHT_DTYPES}`);
const SHARD = parseShardSize(values["shard-size"]!);
if (typeof SHARD !== "number") throw new Error("--shard-size must be a size in bytes");
/** A `--size`² latent's 2×2 patches and a 128-token caption. */
const TOKENS = (Number(values.size) / 2) ** 2 + 128;
const HEAD = CONFIG.dim / CONFIG.heads;

const rssMib = async () =>
  Number((await Deno.readTextFile("/proc/self/status")).match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;

const wave = (n: number, amplitude: number) =>
  Float32Array.from({ length: n }, (_, i) => amplitude * Math.sin(i * 0.37));

if (values.child) {
  const sharded = values.child === "sharded";
  const shards: number[] = [];
  const device = values.device as DeviceName;
  // Whole means the backend itself, unwrapped: even where sharding would split (WebGPU over 1
  // GiB, and always over 4 GiB).
  const backend = sharded
    ? await selectBackend(device, {
      shardSize: SHARD,
      onSharded: (_, bytes) => shards.push(...bytes),
    })
    : device === "cpu"
    ? createNodeBackend()
    : await createWebBackend(device, device === "webgpu" ? await probeWebGpu() : undefined);
  let t = performance.now();
  const session = await backend.createSession({
    path: `${values.dir}/model.onnx`,
    externalDataPath: `${values.dir}/model.onnx_data`,
  });
  const loadS = (performance.now() - t) / 1000;
  const loadPeakMib = await peakRssMib();
  const loadedMib = await rssMib();
  if (values["load-only"]) {
    console.log(JSON.stringify({
      mode: values.child,
      shards: shards.length || 1,
      shardBytes: shards.map(formatBytes).join(" "),
      loadS,
      loadPeakMib,
      loadedMib,
    }));
    Deno.exit(0);
  }
  t = performance.now();
  const out = Object.values(
    await session.run({
      hidden_states: backend.tensor("float32", wave(TOKENS * CONFIG.dim, 1), [
        1,
        TOKENS,
        CONFIG.dim,
      ]),
      adaln_input: backend.tensor("float32", wave(CONFIG.adalnWidth, 0.5), [1, CONFIG.adalnWidth]),
      rope_cos: backend.tensor("float32", wave(TOKENS * HEAD, 1).map(Math.cos), [TOKENS, 1, HEAD]),
      rope_sin: backend.tensor("float32", wave(TOKENS * HEAD, 1).map(Math.sin), [TOKENS, 1, HEAD]),
    }),
  )[0];
  const data = await out.getData() as Float32Array;
  const forwardS = (performance.now() - t) / 1000;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data.slice()));
  await Deno.writeFile(
    `${values.dir}/${values.child}-${values.device}.f32`,
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  console.log(JSON.stringify({
    mode: values.child,
    shards: shards.length || 1,
    shardBytes: shards.map(formatBytes).join(" "),
    loadS,
    loadPeakMib,
    loadedMib,
    forwardS,
    peakMib: await peakRssMib(),
    output: Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join(""),
  }));
  await session.release();
} else {
  const dir = await Deno.makeTempDir({ prefix: "denoise-shards-" });
  try {
    const weights = randomWeights(`${dir}/model.onnx_data`, "model.onnx_data", DTYPE, 1517);
    const { graph, cost } = zImageDit(CONFIG, 1517, TOKENS, 1, weights);
    await Deno.writeFile(
      `${dir}/model.onnx`,
      graph.serialize({ externalData: "model.onnx_data" }).model,
    );
    weights.close();
    const bytes = (await Deno.stat(`${dir}/model.onnx_data`)).size;
    console.log(
      `# Z-Image DiT at real widths, ${CONFIG.blocks} blocks, ${DTYPE}: ${
        (cost.parameters / 1e6).toFixed(0)
      } M parameters, ${formatBytes(bytes)} of weights; ${TOKENS} tokens; ${values.device}\n`,
    );
    console.log(
      "| opened | shards | load s | peak RSS while loading MiB | RSS loaded MiB | forward s | peak RSS MiB | output SHA-256 |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    const runs = [["whole", values.device!], ["sharded", values.device!]];
    if (values["compare-cpu"]) runs.push(["whole", "cpu"]);
    for (const [mode, device] of runs) {
      const child = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          import.meta.filename!,
          ...Deno.args,
          "--device",
          device,
          "--child",
          mode,
          "--dir",
          dir,
        ],
        stderr: "inherit",
      }).output();
      const line = new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!;
      const r = JSON.parse(line);
      const f = (n: number | undefined, d = 0) => n?.toFixed(d) ?? "–";
      console.log(
        `| ${r.mode}${device === values.device ? "" : ` on ${device}`}${
          r.shardBytes ? ` (${r.shardBytes})` : ""
        } | ${r.shards} | ${f(r.loadS, 1)} | ${f(r.loadPeakMib)} | ${f(r.loadedMib)} | ${
          f(r.forwardS, 2)
        } | ${f(r.peakMib)} | ${r.output ?? "–"} |`,
      );
    }
    if (values["compare-cpu"]) {
      const read = async (name: string) =>
        new Float32Array((await Deno.readFile(`${dir}/${name}.f32`)).buffer);
      const cpu = await read("whole-cpu");
      const scale = cpu.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (const mode of ["whole", "sharded"]) {
        const out = await read(`${mode}-${values.device}`);
        const diff = out.reduce((m, v, i) => Math.max(m, Math.abs(v - cpu[i])), 0);
        console.log(
          `- ${mode} on ${values.device}: max abs difference from cpu ${
            (diff / scale).toExponential(2)
          } of cpu's max abs`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
