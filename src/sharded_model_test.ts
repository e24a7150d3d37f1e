/**
 * `--shard-size`: the tiny Z-Image checkpoint, converted, served with its transformer split into
 * three or more sessions draws the same image bytes as served whole (cpu, over HTTP; WebGPU on
 * lavapipe, through the pipeline), and a shard size one of its nodes cannot fit is a 503
 * `model_load_failed` with the figures.
 */
import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { convert } from "../compute/convert/mod.ts";
import { loadPipeline } from "../compute/mod.ts";
import { initializerBytes, splitModel } from "../compute/graph/shard_graph.ts";
import { webGpuForTests } from "../compute/backends/webgpu_for_tests.ts";
import { REFERENCE_DATA, requestImage } from "../fixtures/reference/served.ts";
import { startServer } from "./test_server.ts";

const REQUEST = { prompt: "a red circle", size: "64x64", num_inference_steps: 2, seed: 7 };

/** The converted checkpoint in a temporary folder, and a shard size splitting its transformer. */
async function withConverted(fn: (model: string, shardSize: number) => Promise<void>) {
  const tmp = await Deno.makeTempDir();
  try {
    const model = `${tmp}/model`;
    await convert(`${REFERENCE_DATA}zimage`, model);
    const transformer = pkg.onnx.ModelProto.decode(
      await Deno.readFile(`${model}/transformer/model.onnx`),
    );
    const graph = transformer.graph!;
    const sizes = new Map(graph.initializer!.map((t) => [t.name!, initializerBytes(t)]));
    // Its largest node's weights (the timestep embedder's first layer): the transformer splits
    // before and after that node; the text encoder and the VAE, smaller, stay whole.
    const shardSize = Math.max(
      ...graph.node!.map((n) => n.input!.reduce((s, i) => s + (sizes.get(i) ?? 0), 0)),
    );
    const shards = splitModel(transformer, shardSize).length;
    assert.ok(shards >= 3, `the transformer splits into ${shards} shards`);
    await fn(model, shardSize);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The image the server draws for {@linkcode REQUEST}, and its log. */
async function servedImage(args: string[]) {
  const server = await startServer([...args, "--device", "cpu"]);
  try {
    return { image: await requestImage(server.url, REQUEST), log: server.output() };
  } finally {
    await server.stop();
  }
}

Deno.test("a transformer served in 3 or more shards draws the same bytes as whole (cpu, over HTTP)", async () => {
  await withConverted(async (model, shardSize) => {
    const whole = await servedImage(["--model", model]);
    const split = await servedImage(["--model", model, "--shard-size", String(shardSize)]);
    assert.doesNotMatch(whole.log, /shards/);
    assert.match(split.log, /transformer\/model\.onnx opened in 3 shards \(.* of weights\)/);
    assert.deepEqual(split.image, whole.image);
  });
});

Deno.test("a shard size that a node cannot fit is a 503 model_load_failed with the figures", async () => {
  await withConverted(async (model) => {
    const server = await startServer(["--model", model, "--device", "cpu", "--shard-size", "40K"], {
      waitReady: false,
    });
    try {
      const expected =
        /text_encoder\/model\.onnx \([\d.]+ KiB\) in shards of 40\.0 KiB on cpu: node \S+ alone holds 41\.0 KiB of weights, more than the shard size of 40\.0 KiB; give a larger --shard-size/;
      const deadline = Date.now() + 30_000;
      let health: { reason?: string } = {};
      while (!/failed/.test(health.reason ?? "") && Date.now() < deadline) {
        health = await (await fetch(`${server.url}/health`)).json();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(health.reason ?? "", expected);
      const res = await fetch(`${server.url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "x" }),
      });
      assert.equal(res.status, 503);
      assert.equal((await res.json()).error.code, "model_load_failed");
    } finally {
      await server.stop();
    }
  });
});

const gpu = await webGpuForTests();
Deno.test({
  name: `a transformer in 3 or more shards draws the same bytes as whole (WebGPU pipeline)${
    gpu.ignored ? ` (ignored: ${gpu.ignored})` : ""
  }`,
  ignore: gpu.ignored !== undefined,
  fn: async () => {
    await withConverted(async (model, shardSize) => {
      const request = { prompt: REQUEST.prompt, width: 64, height: 64, steps: 2, seed: 7 };
      const images = [];
      const sharded: string[] = [];
      for (const size of ["auto", shardSize] as const) {
        const p = await loadPipeline(model, {
          device: "webgpu",
          backend: { shardSize: size, onSharded: (graph) => sharded.push(graph) },
        });
        try {
          images.push((await p.generate(request)).images[0].data);
        } finally {
          await p.release();
        }
      }
      assert.deepEqual(sharded, ["transformer/model.onnx"]);
      assert.deepEqual(images[1], images[0]);
    });
  },
});
