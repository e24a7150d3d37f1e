import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { readFloat32 } from "../backends/backend.ts";
import { padConvChannels } from "./conv_channel_padding.ts";
import { encodeModel } from "./model_bytes.ts";

const UNET = new URL("../../models/shapes-tiny/unet/model.onnx", import.meta.url);

Deno.test("conv channel padding: shapes-tiny's conv_in (18 channels) gets 20, and the same output", async () => {
  const bytes = await Deno.readFile(UNET);
  const model = pkg.onnx.ModelProto.decode(bytes);
  assert.deepEqual(padConvChannels(model), [{ name: "/conv_in/Conv", from: 18, to: 20 }]);
  const padded = encodeModel(model);
  const backend = createNodeBackend(1);
  const feeds = () => ({
    sample: backend.tensor(
      "float32",
      Float32Array.from({ length: 8 * 32 * 32 }, (_, i) => Math.sin(i * 0.37)),
      [1, 8, 32, 32],
    ),
    timestep: backend.tensor("float32", new Float32Array([500]), []),
    encoder_hidden_states: backend.tensor(
      "float32",
      Float32Array.from({ length: 77 * 128 }, (_, i) => Math.cos(i * 0.11)),
      [1, 77, 128],
    ),
  });
  const outputs: Float32Array[] = [];
  for (const graph of [bytes, padded]) {
    const session = await backend.createSession({ bytes: graph });
    outputs.push(await readFloat32((await session.run(feeds())).out_sample));
    await session.release();
  }
  const d = outputs[0].reduce((m, v, i) => Math.max(m, Math.abs(v - outputs[1][i])), 0);
  assert.ok(d < 1e-5, `max |Δ| ${d}`);
});

Deno.test("conv channel padding: a graph with nothing to pad is left alone", async () => {
  const sd = new URL("../../fixtures/models/sd-turbo-tiny/unet/model.onnx", import.meta.url);
  const model = pkg.onnx.ModelProto.decode(await Deno.readFile(sd));
  const before = encodeModel(model);
  assert.deepEqual(padConvChannels(model), []);
  assert.deepEqual(encodeModel(model), before);
});
