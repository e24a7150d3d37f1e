import assert from "node:assert/strict";
import { readFloat32 } from "../backends/backend.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { convertComponent, readComponentFolder } from "../convert/components.ts";
import { parseSafetensors, tensorToFloat32 } from "./safetensors.ts";
import type { LoraAdapter, LoraLayer } from "./adapter.ts";
import { indexGraphWeights, type WeightTarget } from "./graph_weights.ts";
import { LowRankProduct } from "./low_rank_product.ts";
import { applyPlan, planMerge, weightValues } from "./merge.ts";

// An adapter on every attention and feed-forward Linear of diffusers' tiny SD 1.x UNet
// (fixtures/reference), merged into the converter's fp32, q8 and q4 graphs of it.
const DATA = new URL("../../fixtures/reference/data/", import.meta.url).pathname;
const backend = createNodeBackend(1);

/** The UNet converted at `dtype`: its graph and weights. */
async function unet(dtype: string) {
  const { config, weights } = await readComponentFolder(`${DATA}sd15/unet`);
  const files = convertComponent("unet", config, weights, "text_encoder", dtype as "fp32");
  // Copies into plain Uint8Arrays, as the pipeline reads them from files (protobufjs may return a
  // Node Buffer, whose slice() is a view).
  return {
    model: new Uint8Array(files.get("unet/model.onnx")!),
    external: new Map([["model.onnx_data", new Uint8Array(files.get("unet/model.onnx_data")!)]]),
  };
}

/** Seeded values in [-1, 1). */
function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 30 - 1;
  });
}

/** Linear layers, and SD 1.x's 1×1 `proj_in`/`proj_out` and 3×3 resnet convs (int8 at q8 and q4). */
const ADAPTED =
  /attn[12]\.(to_q|to_k|to_v|to_out\.0)$|ff\.net\.(0\.proj|2)$|proj_(in|out)$|resnets\.0\.conv1$/;

/** Rank-2 factors for every adapted module of the fp32 graph (torch shapes `[out, in]`). */
function adapter(targets: ReadonlyMap<string, WeightTarget>): LoraAdapter {
  const layers: LoraLayer[] = [];
  let seed = 1;
  for (const [module, t] of targets) {
    if (!ADAPTED.test(module)) continue;
    const [out, inputs] = t.transposed ? [t.dims[1], t.dims[0]] : t.dims;
    // A conv's factors as kohya writes them: A `[2, in, kh, kw]`, B `[out, 2, 1, 1]`.
    const kernel = t.dims.slice(2), size = kernel.reduce((a, b) => a * b, 1);
    layers.push({
      component: "denoiser",
      module,
      flat: false,
      down: { data: random(2 * inputs * size, seed++), dims: [2, inputs, ...kernel] },
      up: {
        data: random(out * 2, seed++).map((x) => x * 0.3),
        dims: kernel.length ? [out, 2, 1, 1] : [out, 2],
      },
      multiplier: 1,
    });
  }
  return { source: "test adapter", format: "diffusers", layers };
}

async function forward(bytes: { model: Uint8Array; external: Map<string, Uint8Array> }) {
  const manifest = JSON.parse(await Deno.readTextFile(`${DATA}sd15.manifest.json`));
  const ref = parseSafetensors(await Deno.readFile(`${DATA}sd15.reference.safetensors`)).tensors;
  const input = (name: string) =>
    backend.tensor("float32", tensorToFloat32(ref.get(name)!), ref.get(name)!.shape);
  const session = await backend.createSession({
    bytes: bytes.model,
    externalData: bytes.external,
  });
  try {
    const result = await session.run({
      sample: input("unet.sample"),
      timestep: backend.tensor(
        "float32",
        Float32Array.of(manifest.components.unet.inputs.timestep.value),
        [1],
      ),
      encoder_hidden_states: input("unet.encoder_hidden_states"),
    });
    return await readFloat32(result.out_sample);
  } finally {
    await session.release();
  }
}

/** max |a − b| / max |b|. */
function relative(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

Deno.test("LoRA merges into q8 and q4 converted graphs (dequantize, add, quantize again) as into fp32", async () => {
  const product = await LowRankProduct.open(backend);
  try {
    const fp32 = await unet("fp32");
    const lora = adapter(indexGraphWeights(fp32.model, "unet").byModule);
    assert.ok(lora.layers.length >= 20, `${lora.layers.length} layers`);
    const merge = async (bytes: typeof fp32) => {
      const index = indexGraphWeights(bytes.model, "unet");
      const plan = planMerge([{ adapter: lora, scale: 1 }], new Map([["denoiser", index]]));
      await applyPlan(plan.get("denoiser")!, bytes, product);
      return [...plan.get("denoiser")!.keys()];
    };
    /** Each target's weight as torch's `[out, in]`, dequantized. */
    const torchWeights = (bytes: typeof fp32, targets: WeightTarget[]) =>
      new Map(targets.map((t) => {
        const w = weightValues(t, bytes);
        if (!t.transposed) return [t.module, w];
        const [rows, cols] = t.dims;
        const out = new Float32Array(w.length);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
        }
        return [t.module, out];
      }));
    const base = await forward(fp32);
    const expected = torchWeights(fp32, await merge(fp32));
    const merged = await forward(fp32);
    const effect = relative(merged, base);
    console.log(
      `fp32: the adapter (${lora.layers.length} layers) moves the UNet output by ${
        effect.toFixed(3)
      } of its range`,
    );
    assert.ok(effect > 0.1, `${effect}`);
    for (const [dtype, kind] of [["q8", "int8"], ["q4", "q4"]]) {
      const bytes = await unet(dtype);
      const unmerged = await forward(bytes);
      const targets = await merge(bytes);
      // Linear layers and the UNet's convs at the dtype's kind.
      assert.ok(targets.every((t) => t.dtype === kind), `${dtype}: ${targets.map((t) => t.dtype)}`);
      assert.ok(targets.filter((t) => t.op === "Conv").length >= 2, `${dtype}: convs`);
      // Each merged weight is fp32's merged weight up to the dtype's rounding: half a step of
      // the new scale, plus half a step of the base's (the merge starts from the rounded base).
      let worst = 0;
      for (const [module, w] of torchWeights(bytes, targets)) {
        const levels = kind === "int8" ? 127 : 7;
        const want = expected.get(module)!;
        const range = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const error = w.reduce((m, x, i) => Math.max(m, Math.abs(x - want[i])), 0);
        worst = Math.max(worst, error / (range / levels));
      }
      console.log(`${dtype}: merged weights within ${worst.toFixed(2)} steps of fp32's merge`);
      assert.ok(worst <= 1.01, `${dtype}: ${worst} quantization steps`);
      const quantizedMerged = await forward(bytes);
      const before = relative(unmerged, base), after = relative(quantizedMerged, merged);
      console.log(
        `${dtype}: output vs fp32's ${before.toFixed(4)} of its range unmerged, ${
          after.toFixed(4)
        } merged`,
      );
      // The adapter's effect comes through quantization: what remains is the dtype's rounding
      // of weights the adapter made larger.
      assert.ok(after < effect / 3, `${dtype}: ${after} vs the effect ${effect}`);
    }
  } finally {
    await product.release();
  }
});
