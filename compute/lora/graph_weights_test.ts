import assert from "node:assert/strict";
import { flatName, indexGraphWeights } from "./graph_weights.ts";

const SHAPES_UNET = new URL("../../models/shapes-tiny/unet/model.onnx", import.meta.url);

Deno.test("a torch export's Linear and Conv weights are found by node scope, in their stored layouts", async () => {
  const bytes = await Deno.readFile(SHAPES_UNET);
  const index = indexGraphWeights(bytes, "unet/model.onnx");
  const matmul = index.byModule.get(
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
  )!;
  // Linear(128 → 64) on a 3-D input: MatMul on onnx::MatMul_N, stored [in, out].
  assert.equal(matmul.op, "MatMul");
  assert.match(matmul.initializer, /^onnx::MatMul_\d+$/);
  assert.deepEqual([matmul.dims, matmul.transposed], [[128, 64], true]);
  // Linear on a 2-D input: Gemm with transB = 1 on the named [out, in] weight.
  const gemm = index.byModule.get("down_blocks.0.resnets.0.time_emb_proj")!;
  assert.deepEqual([gemm.op, gemm.initializer, gemm.dims, gemm.transposed], [
    "Gemm",
    "down_blocks.0.resnets.0.time_emb_proj.weight",
    [32, 128],
    false,
  ]);
  const conv = index.byModule.get("down_blocks.1.resnets.0.conv_shortcut")!;
  assert.deepEqual([conv.op, conv.dims], ["Conv", [64, 32, 1, 1]]);
  assert.equal(
    index.byFlatName.get(flatName("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")),
    matmul,
  );
  // The attention score MatMuls (no weight) and `to_out.0` scoping.
  assert.ok(!index.byModule.has("down_blocks.1.attentions.0.transformer_blocks.0.attn2"));
  assert.ok(index.byModule.has("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"));
  // Every inline weight's bytes are where the index says.
  const { offset, length } = conv.location;
  assert.equal(conv.location.file, undefined);
  assert.ok(offset > 0 && offset + length <= bytes.length);
});
