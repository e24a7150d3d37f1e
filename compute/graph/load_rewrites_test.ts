import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { rewriteForLoad } from "./load_rewrites.ts";

const UNET = new URL("../../models/shapes-tiny/unet/model.onnx", import.meta.url);
const ops = (bytes: Uint8Array) =>
  new Set(pkg.onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType));

Deno.test("rewriteForLoad: both rewrites on one decode; the fused graph is padded too", async () => {
  const bytes = await Deno.readFile(UNET);
  const both = rewriteForLoad(bytes, { padConvChannels: true, fuseAttention: true });
  assert.ok(ops(both.exported).has("Pad") && !ops(both.exported).has("MultiHeadAttention"));
  assert.ok(ops(both.fused!).has("Pad") && ops(both.fused!).has("MultiHeadAttention"));
  // Nothing asked: the very same bytes, not a re-encoding.
  assert.equal(rewriteForLoad(bytes, {}).exported, bytes);
  assert.equal(rewriteForLoad(bytes, {}).fused, undefined);
});

Deno.test("rewriteForLoad: bytes that are no model come back as they are", () => {
  const notAModel = new TextEncoder().encode("not a model, though it says Conv and Softmax");
  const out = rewriteForLoad(notAModel, { padConvChannels: true, fuseAttention: true });
  assert.equal(out.exported, notAModel);
  assert.equal(out.fused, undefined);
});
