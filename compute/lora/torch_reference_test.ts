import assert from "node:assert/strict";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { readFloat32 } from "../backends/backend.ts";
import { adapterFiles, readAdapter } from "./files.ts";
import { indexGraphWeights } from "./graph_weights.ts";
import { LowRankProduct } from "./low_rank_product.ts";
import { applyPlan, planMerge } from "./merge.ts";

// The trained palette-swap adapter, merged by our code into the shapes-tiny UNet, against the
// same merge done in PyTorch by training/lora.py (fixtures/loras/shapes-palette-swap/reference.json).
const ROOT = new URL("../../", import.meta.url).pathname;
const reference = JSON.parse(
  await Deno.readTextFile(`${ROOT}fixtures/loras/shapes-palette-swap/reference.json`),
);
const UNET = `${ROOT}models/shapes-tiny/unet/model.onnx`;

for (
  const [format, path] of [
    ["PEFT folder", "models/loras/shapes-palette-swap"],
    ["diffusers file", "fixtures/loras/shapes-palette-swap/diffusers.safetensors"],
    ["Kohya file", "fixtures/loras/shapes-palette-swap/kohya.safetensors"],
  ]
) {
  Deno.test(`the trained adapter (${format}) merged into the real UNet matches PyTorch's merge`, async () => {
    const backend = createNodeBackend();
    const adapter = await readAdapter(await adapterFiles(`${ROOT}${path}`), 2 ** 30);
    const product = await LowRankProduct.open(backend);
    const run = async (scale?: number) => {
      const bytes = await Deno.readFile(UNET);
      if (scale !== undefined) {
        const index = indexGraphWeights(bytes, "unet");
        const plan = planMerge([{ adapter, scale }], new Map([["denoiser", index]]));
        await applyPlan(plan.get("denoiser")!, { model: bytes, external: new Map() }, product);
      }
      const session = await backend.createSession({ bytes });
      const feeds = Object.fromEntries(
        Object.entries(reference.inputs as Record<string, { dims: number[]; data: number[] }>)
          .map(([name, t]) => [name, backend.tensor("float32", Float32Array.from(t.data), t.dims)]),
      );
      const out = await readFloat32((await session.run(feeds)).out_sample);
      await session.release();
      return out;
    };
    const maxDiff = (a: Float32Array, b: number[]) =>
      a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    try {
      assert.ok(maxDiff(await run(), reference.base_output) < 1e-4, "base");
      const merged = await run(1);
      // The adapter moves the output by up to 0.135; the two merges agree to float precision.
      assert.ok(maxDiff(merged, reference.base_output) > 0.1);
      assert.ok(
        maxDiff(merged, reference.merged_output) < 1e-4,
        `${maxDiff(merged, reference.merged_output)}`,
      );
      const half = await run(0.5);
      assert.ok(maxDiff(half, reference.merged_output_scale_0_5) < 1e-4);
    } finally {
      await product.release();
    }
  });
}
