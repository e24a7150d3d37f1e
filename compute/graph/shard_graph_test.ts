import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { zImageDit } from "../networks/z_image_dit.ts";
import { graphWeightBytes, planCuts, ShardTooLargeError, splitModel } from "./shard_graph.ts";

/** Z-Image's DiT block stack at tiny widths: 4 blocks of the same weight bytes. */
function dit() {
  const { graph } = zImageDit(
    { dim: 32, heads: 2, ffnHidden: 64, adalnWidth: 16, blocks: 4 },
    1,
    20,
  );
  return pkg.onnx.ModelProto.decode(graph.serialize().model);
}

Deno.test("a transformer is cut between its blocks, each shard reading the block before's output and the graph inputs", () => {
  const model = dit();
  const nodes = model.graph!.node!;
  const quarter = Math.ceil(graphWeightBytes(model.graph!) / 4);
  const cuts = planCuts(model.graph!, quarter + 64);
  assert.deepEqual(
    cuts.map((c) => nodes[c].name),
    [1, 2, 3].map((i) => `/layers.${i}/adaLN_modulation.0/Gemm`),
  );
  const shards = splitModel(model, quarter + 64);
  assert.equal(shards.length, 4);
  assert.deepEqual(shards[0].inputs.sort(), [
    "adaln_input",
    "hidden_states",
    "rope_cos",
    "rope_sin",
  ]);
  for (const [i, shard] of shards.entries()) {
    assert.equal(shard.weightBytes, shards[0].weightBytes);
    assert.equal(shard.inputs.filter((n) => !/^(adaln_input|rope_)/.test(n)).length, 1, `${i}`);
    assert.equal(shard.outputs.length, 1);
  }
  assert.deepEqual(shards.at(-1)!.outputs, model.graph!.output!.map((o) => o.name));
  // Half the size: two shards, cut in the middle.
  assert.deepEqual(planCuts(model.graph!, 2 * quarter + 64).map((c) => nodes[c].name), [
    "/layers.2/adaLN_modulation.0/Gemm",
  ]);
});

Deno.test("a node heavier than the shard size cannot be placed", () => {
  const model = dit();
  assert.throws(
    () => planCuts(model.graph!, 1000),
    (e: Error) =>
      e instanceof ShardTooLargeError &&
      /^node \S+ alone holds [\d.]+ KiB of weights, more than the shard size of 1000 B$/.test(
        e.message,
      ),
  );
});
