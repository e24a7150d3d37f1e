import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { createWebBackend } from "../backends/onnxruntime_web.ts";
import { webGpuForTests } from "../backends/webgpu_for_tests.ts";
import { type Backend, readFloat32 } from "../backends/backend.ts";
import { fuseAttention, MS_DOMAIN } from "./attention_fusion.ts";
import { rewriteForLoad } from "./load_rewrites.ts";

const { onnx } = pkg;
/** Four attentions exported by torch.onnx (see torch_attention.py): three fuse, one is masked. */
const TORCH = await Deno.readFile(new URL("../testdata/torch_attention.onnx", import.meta.url));

function feeds(backend: Backend) {
  let seed = 1;
  const random = (n: number) =>
    Float32Array.from({ length: n }, () => ((seed = (seed * 48271) % 2147483647) / 2 ** 31) - 0.5);
  return {
    hidden_states: backend.tensor("float32", random(3 * 9 * 16), [3, 9, 16]),
    encoder_hidden_states: backend.tensor("float32", random(3 * 5 * 12), [3, 5, 12]),
    mask: backend.tensor("float32", random(3 * 9 * 9), [3, 1, 9, 9]),
  };
}

async function run(backend: Backend, bytes: Uint8Array): Promise<Float32Array> {
  const session = await backend.createSession({ bytes });
  const out = await session.run(feeds(backend));
  const values = await readFloat32(out.out);
  await session.release();
  return values;
}

Deno.test("torch's exported attention becomes MultiHeadAttention, except where a mask is added", () => {
  const model = onnx.ModelProto.decode(TORCH);
  const fused = fuseAttention(model);
  assert.deepEqual(
    fused.map((f) => [f.name, f.heads, Number.isNaN(f.scale) ? "1/√d" : f.scale.toFixed(4)]),
    [
      ["/attn1/MultiHeadAttention_0", 2, "1/√d"], // head size and scale computed from shapes
      ["/attn2/MultiHeadAttention_1", 4, "0.5000"], // ÷ √4
      ["/attn3/MultiHeadAttention_2", 2, "0.3536"], // 8^−¼ on q and on k
    ],
  );
  const ops = model.graph!.node!.map((n) => n.opType);
  assert.equal(ops.filter((op) => op === "Softmax").length, 1); // attn4's, masked
  assert.equal(ops.filter((op) => op === "MultiHeadAttention").length, 3);
  // Their shape arithmetic went with them; attn4's stayed.
  const left = model.graph!.node!.filter((n) => /^\/attn[123]\//.test(n.name ?? ""));
  assert.deepEqual(
    [...new Set(left.map((n) => n.opType))].sort(),
    ["Add", "MatMul", "MultiHeadAttention"],
  );
  assert.ok(model.opsetImport!.some((o) => o.domain === MS_DOMAIN));
});

const webgpu = await webGpuForTests();
const BACKENDS: Record<string, () => Promise<Backend>> = {
  cpu: () => Promise.resolve(createNodeBackend(2, { fuseAttention: false })),
  wasm: () => createWebBackend("wasm", undefined, { fuseAttention: false }),
  webgpu: () => createWebBackend("webgpu", webgpu.adapter, { fuseAttention: false }),
};

for (const [device, create] of Object.entries(BACKENDS)) {
  Deno.test({
    name: `the fused graph computes what the exported one does (${device})${
      device === "webgpu" && webgpu.ignored ? ` (ignored: ${webgpu.ignored})` : ""
    }`,
    ignore: device === "webgpu" && webgpu.ignored !== undefined,
    async fn() {
      const backend = await create();
      const [plain, fused] = [
        await run(backend, TORCH),
        await run(backend, rewriteForLoad(TORCH, { fuseAttention: true }).fused!),
      ];
      const worst = plain.reduce((m, x, i) => Math.max(m, Math.abs(x - fused[i])), 0);
      assert.ok(worst < 1e-5, `largest difference ${worst}`);
    },
  });
}

Deno.test("a graph without fusable attention is not rewritten", () => {
  const model = onnx.ModelProto.decode(TORCH);
  // attn1's probabilities also leave the graph: fusing would lose them.
  const probs = model.graph!.node!.find((n) => n.name === "/attn1/Softmax")!.output![0];
  model.graph!.output!.push({ name: probs });
  const names = fuseAttention(model).map((f) => f.name);
  assert.ok(!names.some((n) => n.startsWith("/attn1/")));
  assert.equal(names.length, 2);
  const noSoftmax = onnx.ModelProto.encode({ graph: { node: [{ opType: "Relu" }] } }).finish();
  assert.equal(rewriteForLoad(noSoftmax, { fuseAttention: true }).fused, undefined);
  // Bytes that are no model are left to ONNX Runtime to refuse, with its own message.
  const notAModel = new TextEncoder().encode("not a model, though it says Softmax");
  assert.equal(rewriteForLoad(notAModel, { fuseAttention: true }).fused, undefined);
});
