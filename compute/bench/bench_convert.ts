/**
 * `deno task bench:convert [--gb 8] [--dtype bf16|fp32] [--out-dtype fp32,fp16] [--per-dtype fp32,…]`:
 * the converter's throughput and peak memory on a large checkpoint. It writes a random
 * `ZImageTransformer2DModel` component at Z-Image-Turbo's real widths (dim 3840, 30 heads, caption
 * width 2560), with as many main layers as it takes to reach `--gb` GB of safetensors, tensor by
 * tensor into a temporary folder beside the repository (the disk, not a RAM-backed /tmp); then
 * converts it once per `--out-dtype`, each in its own process that reports its peak RSS (`VmHWM`
 * of /proc/self/status) on exit; then deletes everything. Prints markdown: input GB, seconds, MB/s
 * of input, peak RSS against the target 1 GiB + 2 × the largest tensor (as float32).
 *
 * `--per-dtype fp32,fp16,q8,q4` adds, for the same widths with one main layer (the four refiner layers and one:
 * 1.8 GB of bf16), each `--dtype`'s conversion (seconds, peak RSS, size) and a forward pass of the
 * converted graph on onnxruntime-node CPU at a 512² image's latents (1024 image tokens, 32 caption
 * tokens), each in a fresh process: load and run seconds, peak RSS, and the output's largest
 * difference from the first dtype's, relative to its largest value.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { type WeightSource } from "../graph/onnx_builder.ts";
import { zImageTransformer } from "../networks/z_image_transformer.ts";
import { zImageTransformerConfig } from "../convert/configs.ts";
import { readFloat32 } from "../backends/backend.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { convert } from "../convert/convert.ts";
import { torchRandn } from "../random.ts";

/** VmHWM (peak resident set) of this process, in bytes. */
function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

if (Deno.args[0] === "--child") {
  const [, src, out, dtype] = Deno.args;
  const started = performance.now();
  await convert(src, out, { dtype });
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ seconds, peakRss: peakRss() }));
  Deno.exit(0);
}

if (Deno.args[0] === "--child-run") {
  // One forward pass of a converted transformer; its output is written to `result` for comparing.
  const [, folder, result] = Deno.args;
  const backend = createNodeBackend(navigator.hardwareConcurrency);
  let started = performance.now();
  const session = await backend.createSession({
    path: `${folder}/model.onnx`,
    externalDataPath: `${folder}/model.onnx_data`,
  });
  const loadSeconds = (performance.now() - started) / 1000;
  const feeds = {
    hidden_states: backend.tensor("float32", torchRandn([16 * 64 * 64], 1), [1, 16, 1, 64, 64]),
    timestep: backend.tensor("float32", Float32Array.of(0.5), [1]),
    encoder_hidden_states: backend.tensor("float32", torchRandn([32 * 2560], 2), [1, 32, 2560]),
  };
  await session.run(feeds); // warm-up: first-run allocations
  started = performance.now();
  const out = await session.run(feeds);
  const runSeconds = (performance.now() - started) / 1000;
  const values = await readFloat32(out.unified_results);
  await Deno.writeFile(result, new Uint8Array(values.buffer));
  console.log(JSON.stringify({ loadSeconds, runSeconds, peakRss: peakRss() }));
  Deno.exit(0);
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    gb: { type: "string", default: "8" },
    dtype: { type: "string", default: "bf16" },
    "out-dtype": { type: "string", default: "fp32,fp16" },
    "per-dtype": { type: "string" },
  },
});
const targetBytes = Number(values.gb) * 1e9;
const stored = values.dtype === "fp32" ? { name: "F32", size: 4 } : { name: "BF16", size: 2 };

/** Z-Image-Turbo's transformer config with `layers` main layers. */
const config = (layers: number) => ({
  _class_name: "ZImageTransformer2DModel",
  all_f_patch_size: [1],
  all_patch_size: [2],
  axes_dims: [32, 48, 48],
  axes_lens: [1536, 512, 512],
  cap_feat_dim: 2560,
  dim: 3840,
  in_channels: 16,
  n_heads: 30,
  n_kv_heads: 30,
  n_layers: layers,
  n_refiner_layers: 2,
  norm_eps: 1e-5,
  qk_norm: true,
  rope_theta: 256.0,
  t_scale: 1000.0,
});

/**
 * The parameters (name, shape) the builder asks for, in its order: recorded on one main layer
 * (the values it gets are zeros, and nothing is kept), then the main layer's repeated.
 */
function parameters(layers: number): [string, number[]][] {
  const seen: [string, number[]][] = [];
  const source: WeightSource = {
    take(name, dims) {
      seen.push([name, [...dims]]);
      return new Float32Array(dims.reduce((a, b) => a * b, 1));
    },
    output: { location: "model.onnx_data", append() {} },
  };
  zImageTransformer(zImageTransformerConfig("bench", config(1)), source);
  const out: [string, number[]][] = [];
  for (const [name, dims] of seen) {
    if (!name.startsWith("layers.0.")) out.push([name, dims]);
    else for (let i = 0; i < layers; i++) out.push([`layers.${i}.${name.slice(9)}`, dims]);
  }
  return out;
}

const count = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
const one = parameters(1);
const perLayer = one.filter(([n]) => n.startsWith("layers.0.")).reduce(
  (s, [, d]) => s + count(d) * stored.size,
  0,
);
const rest = one.filter(([n]) => !n.startsWith("layers.")).reduce(
  (s, [, d]) => s + count(d) * stored.size,
  0,
);
const layers = Math.max(1, Math.ceil((targetBytes - rest) / perLayer));
const params = parameters(layers);
const largest = Math.max(...params.map(([, d]) => count(d) * 4));

/** Writes a random component of `layers` main layers into `dir`; returns its size and seconds. */
async function component(dir: string, layers: number) {
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config(layers), null, 2));
  const started = performance.now();
  const bytes = await writeRandomSafetensors(
    `${dir}/diffusion_pytorch_model.safetensors`,
    parameters(layers),
  );
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

/** Runs this file with `args` in a fresh process; its JSON line. */
async function child(args: string[]) {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, ...args],
    stdout: "piped",
  }).output();
  if (!run.success) throw new Error(`${args.join(" ")} failed`);
  return JSON.parse(new TextDecoder().decode(run.stdout));
}

/** Total size of the files in `dir`. */
async function folderBytes(dir: string) {
  let bytes = 0;
  for await (const e of Deno.readDir(dir)) bytes += (await Deno.stat(`${dir}/${e.name}`)).size;
  return bytes;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

const root = new URL("../../", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ dir: root, prefix: ".bench-convert-" });
try {
  const large = join(tmp, "transformer");
  const { bytes: inputBytes, seconds: generateSeconds } = await component(large, layers);
  console.log(`# Converter: streaming throughput and peak memory\n`);
  console.log(
    `Random \`ZImageTransformer2DModel\` at Z-Image-Turbo's widths with ${layers} main layers (${params.length} tensors, ${stored.name}): ${
      (inputBytes / 1e9).toFixed(2)
    } GB of safetensors, written in ${generateSeconds.toFixed(0)} s; largest tensor ${
      (largest / 2 ** 20).toFixed(0)
    } MiB as float32. Each conversion in a fresh process; peak RSS is its VmHWM.\n`,
  );
  console.log(
    "| output dtype | seconds | MB/s of input | output GB | peak RSS MiB | target 1 GiB + 2 × largest, MiB |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const dtype of values["out-dtype"].split(",")) {
    const out = join(tmp, `out-${dtype}`);
    const r = await child(["--child", large, out, dtype]);
    const outputBytes = await folderBytes(`${out}/transformer`);
    await Deno.remove(out, { recursive: true });
    console.log(
      `| ${dtype} | ${r.seconds.toFixed(1)} | ${(inputBytes / 1e6 / r.seconds).toFixed(0)} | ${
        (outputBytes / 1e9).toFixed(2)
      } | ${mib(r.peakRss)} | ${mib(2 ** 30 + 2 * largest)} |`,
    );
  }
  await Deno.remove(large, { recursive: true });
  if (values["per-dtype"]) {
    const small = join(tmp, "transformer-1");
    const { bytes } = await component(small, 1);
    console.log(
      `\n## Per dtype: the same widths, one main layer and the four refiner layers (${
        (bytes / 1e9).toFixed(2)
      } GB of bf16)\n`,
    );
    console.log(
      "| dtype | convert s | convert peak RSS MiB | size MiB | load s | forward s (512², 1024 tokens) | run peak RSS MiB | max diff from the first row (relative) |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    let reference: Float32Array | undefined;
    for (const dtype of values["per-dtype"].split(",")) {
      const out = join(tmp, `small-${dtype}`);
      const c = await child(["--child", small, out, dtype]);
      const size = await folderBytes(`${out}/transformer`);
      const r = await child(["--child-run", `${out}/transformer`, `${out}.out`]);
      const result = new Float32Array((await Deno.readFile(`${out}.out`)).buffer);
      reference ??= result;
      let diff = 0, scale = 0;
      for (let i = 0; i < result.length; i++) {
        diff = Math.max(diff, Math.abs(result[i] - reference[i]));
        scale = Math.max(scale, Math.abs(reference[i]));
      }
      await Deno.remove(out, { recursive: true });
      console.log(
        `| ${dtype} | ${c.seconds.toFixed(1)} | ${mib(c.peakRss)} | ${mib(size)} | ${
          r.loadSeconds.toFixed(1)
        } | ${r.runSeconds.toFixed(2)} | ${mib(r.peakRss)} | ${(diff / scale).toExponential(1)} |`,
      );
    }
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}

/**
 * Writes `params` as one safetensors file of random values, one tensor at a time (sorted by name,
 * as `safetensors` saves them); returns its size. Values: small finite floats from xorshift32.
 */
async function writeRandomSafetensors(path: string, params: [string, number[]][]) {
  const sorted = [...params].sort((a, b) => a[0] < b[0] ? -1 : 1);
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, dims] of sorted) {
    const bytes = count(dims) * stored.size;
    header[name] = { dtype: stored.name, shape: dims, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const file = await Deno.open(path, { write: true, create: true });
  try {
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, BigInt(head.length), true);
    await file.write(length);
    await writeAll(file, head);
    let state = 2463534242;
    for (const [, dims] of sorted) {
      const words = new Uint32Array(Math.ceil((count(dims) * stored.size) / 4));
      for (let i = 0; i < words.length; i++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        // Two bf16 (or one f32's high half) with exponents near 2⁻⁷: finite, weight-sized.
        words[i] = (state & 0x807f807f) | 0x3c003c00;
      }
      await writeAll(file, new Uint8Array(words.buffer, 0, count(dims) * stored.size));
    }
    // On the disk before any conversion is timed: its write-back would otherwise be charged to the
    // first (the page cache throttles a writer while gigabytes of it are still dirty).
    await file.sync();
  } finally {
    file.close();
  }
  return 8 + head.length + offset;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array) {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}
