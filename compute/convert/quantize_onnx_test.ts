import assert from "node:assert/strict";
import { join } from "node:path";
import pkg from "onnx-proto";
import { selectBackend } from "../backends/device.ts";
import { ConvertError } from "../errors.ts";
import { exists } from "../model/files.ts";
import { loadPipeline } from "../load.ts";
import { adapterFiles } from "../lora/files.ts";
import { indexGraphWeights } from "../lora/graph_weights.ts";
import type { GenerateOptions, RgbImage } from "../pipelines/pipeline.ts";
import { convert } from "./convert.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const EMBEDDED = join(ROOT, "models/shapes-tiny");
const PALETTE_SWAP = join(ROOT, "models/loras/shapes-palette-swap");
const SD15_REFERENCE = join(ROOT, "fixtures/reference/data/sd15");
const { INT8 } = pkg.onnx.TensorProto.DataType, UINT4 = 21;
const REQUEST: GenerateOptions = { prompt: "a red circle on a blue background", seed: 3, steps: 4 };

async function images(dir: string, options: Partial<GenerateOptions> = {}): Promise<RgbImage[]> {
  const pipeline = await loadPipeline(dir, { device: "cpu" });
  try {
    return (await pipeline.generate({ ...REQUEST, ...options })).images;
  } finally {
    await pipeline.release();
  }
}

/** The largest and the mean absolute difference of two images, in 1/255. */
function difference(a: RgbImage[], b: RgbImage[]): { worst: number; mean: number } {
  let worst = 0, sum = 0;
  a[0].data.forEach((v, i) => {
    const d = Math.abs(v - b[0].data[i]);
    worst = Math.max(worst, d);
    sum += d;
  });
  return { worst, mean: sum / a[0].data.length };
}

/** Operator types of `<dir>/<component>/model.onnx` and the dtypes of what each Conv reads. */
async function graphOf(dir: string, component: string) {
  const bytes = await Deno.readFile(join(dir, component, "model.onnx"));
  const graph = pkg.onnx.ModelProto.decode(bytes).graph!;
  const inits = new Map(graph.initializer!.map((t) => [t.name, t.dataType]));
  const ops = graph.node!.map((n) => n.opType!);
  const floatWeights = graph.node!.filter((n) =>
    ["MatMul", "Gemm", "Conv"].includes(n.opType!) && inits.get(n.input![1]) === 1
  ).map((n) => n.opType!);
  // What each conv kernel is stored as, through a Reshape and a DequantizeLinear.
  const producers = new Map(graph.node!.map((n) => [n.output![0], n]));
  const convKernels = graph.node!.filter((n) => n.opType === "Conv").map((n) => {
    let name = n.input![1];
    for (let p = producers.get(name); p; p = producers.get(name)) name = p.input![0];
    return inits.get(name);
  });
  return { bytes, ops, floatWeights, convKernels };
}

Deno.test("an ONNX model folder re-written at q8 and q4: its Linear layers and UNet convs quantized, module names kept for LoRA, the image near fp32's", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const base = await images(EMBEDDED);
    const fp32Modules = [
      ...indexGraphWeights((await graphOf(EMBEDDED, "unet")).bytes, "unet")
        .byModule.keys(),
    ].sort();
    const lora = [{ id: "palette", files: await adapterFiles(PALETTE_SWAP), scale: 1 }];
    const swappedBase = await images(EMBEDDED, { lora });
    // The mean difference allowed (measured 1.51 and 14.41/255; 4 steps of an ancestral sampler,
    // so a shape's edge moving a pixel makes the largest difference large whatever the dtype).
    for (const [dtype, tolerance] of [["q8", 3], ["q4", 20]] as const) {
      const dir = `${tmp}/${dtype}`;
      await convert(EMBEDDED, dir, { dtype });
      const unet = await graphOf(dir, "unet");
      assert.deepEqual(unet.floatWeights, [], `${dtype}: layers left in float32`);
      assert.equal(unet.ops.includes("MatMulNBits"), dtype === "q4");
      assert.deepEqual(new Set(unet.convKernels), new Set([dtype === "q4" ? UINT4 : INT8]));
      const vae = await graphOf(dir, "vae_decoder");
      assert.ok(vae.floatWeights.every((op) => op === "Conv"), `${dtype}: the VAE's convs stay`);
      // A LoRA finds every layer it finds in the export.
      const index = indexGraphWeights(unet.bytes, "unet");
      assert.deepEqual([...index.byModule.keys()].sort(), fp32Modules);

      const quantized = await images(dir);
      const { worst, mean } = difference(quantized, base);
      console.log(`${dtype}: ${worst}/255 at most, ${mean.toFixed(2)}/255 on average from fp32's`);
      assert.ok(mean <= tolerance && mean > 0, `${dtype}: ${mean}/255 on average`);

      // The shipped adapter applies to the quantized graphs: it takes their image most of the way
      // to fp32's with the adapter.
      const swapped = difference(await images(dir, { lora }), swappedBase).mean;
      const unswapped = difference(quantized, swappedBase).mean;
      console.log(
        `${dtype}: ${swapped.toFixed(2)}/255 from fp32's image with the adapter, with it; ${
          unswapped.toFixed(2)
        } without`,
      );
      assert.ok(swapped < unswapped / 1.2, `${dtype}: ${swapped} vs ${unswapped}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("a converted fp32 folder (external data) re-written at q8 and q4 draws what converting at q8 and q4 draws", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await convert(SD15_REFERENCE, `${tmp}/fp32`, {});
    for (const dtype of ["q8", "q4"]) {
      await convert(`${tmp}/fp32`, `${tmp}/re-${dtype}`, { dtype });
      await convert(SD15_REFERENCE, `${tmp}/${dtype}`, { dtype });
      const options = { width: 64, height: 64 };
      const { worst } = difference(
        await images(`${tmp}/re-${dtype}`, options),
        await images(`${tmp}/${dtype}`, options),
      );
      assert.equal(worst, 0, `${dtype}: ${worst}/255`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an ONNX model folder is re-written at q8 or q4 only; a damaged one is one line; nothing is left behind", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    for (const dtype of ["fp32", "fp16"]) {
      await assert.rejects(
        () => convert(EMBEDDED, `${tmp}/out`, { dtype }),
        (e) =>
          e instanceof ConvertError &&
          /an ONNX model folder is re-written at q8 or q4 only \(--dtype fp(32|16)\)/.test(
            e.message,
          ),
      );
    }
    assert.deepEqual([...Deno.readDirSync(tmp)], []);
    // A graph that is no ONNX model, or whose external data is missing or short: one line each.
    const copy = `${tmp}/model`;
    await convert(SD15_REFERENCE, copy, {});
    const data = await Deno.readFile(`${copy}/unet/model.onnx_data`);
    for (
      const [damage, message] of [
        [() => Deno.truncate(`${copy}/unet/model.onnx_data`, data.length - 4), /past the end/],
        [() => Deno.remove(`${copy}/unet/model.onnx_data`), /cannot read its external data/],
        [() => Deno.writeTextFile(`${copy}/unet/model.onnx`, "not a graph"), /not an ONNX model/],
      ] as const
    ) {
      await damage();
      await assert.rejects(
        () => convert(copy, `${tmp}/out`, { dtype: "q8" }),
        (e) => e instanceof ConvertError && message.test(e.message) && !e.message.includes("\n"),
      );
      await Deno.writeFile(`${copy}/unet/model.onnx_data`, data);
    }
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["model"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/**
 * A hand-made graph of what exports hold beyond this converter's graphs: `Gemm` with and without
 * `transB`, a `Gemm` with `alpha` 0.5 and a weight two `MatMul`s share (both left float32), a conv
 * kernel too small for 4-bit blocks (int8 at q4), an initializer also declared as a graph input,
 * and every initializer in an external file at its own offset, a bias last.
 */
function handMadeUnet(opset: number): { model: Uint8Array; data: Uint8Array } {
  let seed = 1;
  const random = (n: number) =>
    Float32Array.from({ length: n }, () => (Math.sin(seed++ * 12.9898) * 43758.5453 % 1) * 0.3);
  const weights: [string, number[]][] = [
    ["w1", [64, 32]],
    ["w2", [48, 32]],
    ["w3", [48, 40]],
    ["w4", [40, 40]],
    ["w5", [40, 40]],
    ["k1", [16, 8, 3, 3]],
    ["k2", [5, 16, 1, 1]],
    ["b1", [32]],
    ["b2", [48]],
  ];
  const chunks: Uint8Array[] = [new Uint8Array(64)];
  let offset = 64;
  const initializer = weights.map(([name, dims]) => {
    const bytes = new Uint8Array(random(dims.reduce((a, b) => a * b, 1)).buffer);
    chunks.push(bytes);
    offset += bytes.length;
    return {
      name,
      dims,
      dataType: 1,
      dataLocation: pkg.onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: "weights.bin" },
        { key: "offset", value: String(offset - bytes.length) },
        { key: "length", value: String(bytes.length) },
      ],
    };
  });
  const tensor = (name: string, dims: number[]) => ({
    name,
    type: { tensorType: { elemType: 1, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } },
  });
  const node = (name: string, opType: string, input: string[], output: string, attrs = {}) => ({
    name,
    opType,
    input,
    output: [output],
    attribute: Object.entries(attrs).map(([key, v]) =>
      typeof v === "number" && Number.isInteger(v)
        ? { name: key, type: 2, i: v }
        : Array.isArray(v)
        ? { name: key, type: 7, ints: v }
        : { name: key, type: 1, f: v as number }
    ),
  });
  const model = pkg.onnx.ModelProto.encode({
    irVersion: 7,
    opsetImport: [{ domain: "", version: opset }],
    graph: {
      name: "hand-made",
      node: [
        node("/g1/Gemm", "Gemm", ["x", "w1", "b1"], "h1"),
        node("/g2/Gemm", "Gemm", ["h1", "w2", "b2"], "h2", { transB: 1 }),
        node("/m3/MatMul", "MatMul", ["h2", "w3"], "h3"),
        node("/g4/Gemm", "Gemm", ["h3", "w4"], "y1", { transB: 1, alpha: 0.5 }),
        node("/m5/MatMul", "MatMul", ["h3", "w5"], "a5"),
        node("/m6/MatMul", "MatMul", ["a5", "w5"], "y2"),
        node("/c1/Conv", "Conv", ["img", "k1"], "i1", { pads: [1, 1, 1, 1] }),
        node("/c2/Conv", "Conv", ["i1", "k2"], "y3"),
      ],
      input: [tensor("x", [2, 64]), tensor("img", [1, 8, 6, 6]), tensor("w1", [64, 32])],
      output: [tensor("y1", [2, 40]), tensor("y2", [2, 40]), tensor("y3", [1, 5, 6, 6])],
      initializer,
    },
  }).finish();
  const data = new Uint8Array(offset);
  chunks.reduce((at, c) => (data.set(c, at), at + c.length), 0);
  return { model, data };
}

async function writeHandMade(dir: string, opset = 13): Promise<void> {
  const { model, data } = handMadeUnet(opset);
  await Deno.mkdir(`${dir}/unet`, { recursive: true });
  await Deno.writeFile(`${dir}/unet/model.onnx`, model);
  await Deno.writeFile(`${dir}/unet/weights.bin`, data);
}

async function runHandMade(dir: string): Promise<Float32Array[]> {
  const backend = await selectBackend("cpu");
  const session = await backend.createSession({ path: `${dir}/unet/model.onnx` });
  try {
    const x = Float32Array.from({ length: 128 }, (_, i) => Math.cos(i));
    const img = Float32Array.from({ length: 288 }, (_, i) => Math.sin(i));
    const out = await session.run({
      x: backend.tensor("float32", x, [2, 64]),
      img: backend.tensor("float32", img, [1, 8, 6, 6]),
    });
    return await Promise.all(
      ["y1", "y2", "y3"].map(async (k) => await out[k].getData() as Float32Array),
    );
  } finally {
    await session.release();
  }
}

Deno.test("an export's other shapes: Gemm without transB, alpha, shared weights, small kernels, initializers as inputs, external data at offsets", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await writeHandMade(`${tmp}/fp32`);
    const reference = await runHandMade(`${tmp}/fp32`);
    for (const [dtype, tolerance] of [["q8", 0.05], ["q4", 0.35]] as const) {
      await convert(`${tmp}/fp32`, `${tmp}/${dtype}`, { dtype });
      const unet = await graphOf(`${tmp}/${dtype}`, "unet");
      // alpha 0.5 and the shared weight stay; every other layer is quantized.
      assert.deepEqual(unet.floatWeights, ["Gemm", "MatMul", "MatMul"]);
      assert.deepEqual(unet.convKernels, [dtype === "q4" ? UINT4 : INT8, INT8]);
      const got = await runHandMade(`${tmp}/${dtype}`);
      got.forEach((values, o) => {
        const ref = reference[o];
        const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const worst = values.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i])), 0) / scale;
        console.log(`${dtype}, output ${o}: ${worst.toExponential(1)} of its range from fp32's`);
        assert.ok(worst > 0 && worst <= tolerance, `${dtype}, output ${o}: ${worst} of its range`);
      });
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an ONNX folder that cannot be quantized is one line: old opset, no graph, a bias past the end of its data; a diffusers folder with ONNX graphs too converts its safetensors", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
      ["opset 11", (dir) => writeHandMade(dir, 11), /opset 11 is too old to quantize/],
      ["no graph", async (dir) => {
        await Deno.mkdir(`${dir}/unet`, { recursive: true });
        await Deno.writeFile(`${dir}/unet/model.onnx`, new Uint8Array());
      }, /the model has no graph/],
      ["short data", async (dir) => {
        await writeHandMade(dir);
        const data = await Deno.readFile(`${dir}/unet/weights.bin`);
        await Deno.writeFile(`${dir}/unet/weights.bin`, data.subarray(0, data.length - 4));
      }, /b2 lies past the end of its external data/],
    ];
    for (const [name, make, message] of cases) {
      await make(`${tmp}/${name}`);
      await assert.rejects(
        () => convert(`${tmp}/${name}`, `${tmp}/out`, { dtype: "q4" }),
        (e) => e instanceof ConvertError && message.test(e.message),
        name,
      );
    }
    assert.ok(!(await exists(`${tmp}/out`)));
    // A diffusers folder that ships ONNX graphs beside its safetensors converts from the latter.
    await Deno.mkdir(`${tmp}/both`);
    for (const entry of Deno.readDirSync(SD15_REFERENCE)) {
      await Deno.symlink(join(SD15_REFERENCE, entry.name), `${tmp}/both/${entry.name}`);
    }
    await Deno.remove(`${tmp}/both/unet`);
    await Deno.mkdir(`${tmp}/both/unet`);
    for (const entry of Deno.readDirSync(join(SD15_REFERENCE, "unet"))) {
      await Deno.copyFile(
        join(SD15_REFERENCE, "unet", entry.name),
        `${tmp}/both/unet/${entry.name}`,
      );
    }
    await Deno.writeFile(`${tmp}/both/unet/model.onnx`, new Uint8Array());
    await convert(`${tmp}/both`, `${tmp}/out`, {});
    assert.ok((await Deno.stat(`${tmp}/out/unet/model.onnx`)).size > 1000);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
