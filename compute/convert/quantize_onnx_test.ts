import assert from "node:assert/strict";
import { join } from "node:path";
import pkg from "onnx-proto";
import { ConvertError } from "../errors.ts";
import { loadPipeline } from "../load.ts";
import { adapterFiles } from "../lora/files.ts";
import { indexGraphWeights } from "../lora/graph_weights.ts";
import type { GenerateOptions, RgbImage } from "../pipelines/pipeline.ts";
import { convert } from "./convert.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const EMBEDDED = join(ROOT, "models/shapes-tiny");
const PALETTE_SWAP = join(ROOT, "models/loras/shapes-palette-swap");
const SD15_REFERENCE = join(ROOT, "fixtures/reference/data/sd15");
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
  return { bytes, ops, floatWeights };
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
