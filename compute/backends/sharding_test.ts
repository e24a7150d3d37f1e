import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { type Backend, parseShardSize, type Tensor } from "./backend.ts";
import { createNodeBackend } from "./onnxruntime_node.ts";
import { createWebBackend } from "./onnxruntime_web.ts";
import { withSharding } from "./sharding.ts";
import { webGpuForTests } from "./webgpu_for_tests.ts";
import { graphWeightBytes, initializerBytes, splitModel } from "../graph/shard_graph.ts";
import { convert } from "../convert/convert.ts";
import { ModelLoadError } from "../errors.ts";
import { exists } from "../model/files.ts";

const models = new URL("../../fixtures/models/", import.meta.url).pathname;
const checkpoint = new URL("../../fixtures/reference/data/zimage", import.meta.url).pathname;

/** A graph, with feeds that fit it. */
interface Case {
  path: string;
  feeds: (b: Backend) => Record<string, Tensor>;
}

const random = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.8);

const transformerFeeds = (b: Backend) => ({
  hidden_states: b.tensor("float32", random(16 * 16, 1), [1, 16, 1, 4, 4]),
  timestep: b.tensor("float32", Float32Array.of(0.7), [1]),
  encoder_hidden_states: b.tensor("float32", random(5 * 32, 2), [1, 5, 32]),
});

/**
 * The tiny Z-Image checkpoint converted (its transformer's and Qwen3 text encoder's layers as the
 * converter writes them, weights in model.onnx_data), and the committed fixture's transformer
 * (weights inside the graph).
 */
async function cases(tmp: string): Promise<Case[]> {
  const dir = `${tmp}/zimage`;
  await convert(checkpoint, dir);
  return [
    { path: `${dir}/transformer/model.onnx`, feeds: transformerFeeds },
    {
      path: `${dir}/text_encoder/model.onnx`,
      feeds: (b) => ({
        input_ids: b.tensor("int64", BigInt64Array.of(1n, 17n, 300n, 3n, 0n), [1, 5]),
        attention_mask: b.tensor("int64", BigInt64Array.of(1n, 1n, 1n, 1n, 0n), [1, 5]),
      }),
    },
    { path: `${models}z-image-turbo-tiny/transformer/model.onnx`, feeds: transformerFeeds },
  ];
}

/** A shard size that splits the graph at `path` into 3 or more shards, and their count. */
async function threeShards(path: string): Promise<{ size: number; shards: number }> {
  const model = pkg.onnx.ModelProto.decode(await Deno.readFile(path));
  const graph = model.graph!;
  const sizes = new Map(graph.initializer!.map((t) => [t.name!, initializerBytes(t)]));
  const largest = Math.max(
    ...graph.node!.map((n) => n.input!.reduce((s, i) => s + (sizes.get(i) ?? 0), 0)),
  );
  const total = graphWeightBytes(graph);
  const fits = [total / 4, total / 3, largest + 1024, largest].map(Math.ceil)
    .filter((size) => size >= largest)
    .map((size) => ({ size, shards: splitModel(model, size).length }));
  return fits.find((f) => f.shards >= 3) ?? fits[0];
}

async function outputs(backend: Backend, c: Case): Promise<Uint8Array[]> {
  const data = `${c.path}_data`;
  const session = await backend.createSession({
    path: c.path,
    externalDataPath: (await exists(data)) ? data : undefined,
  });
  try {
    const out = await session.run(c.feeds(backend));
    return await Promise.all(
      session.outputs.map(async (o) => {
        const d = await out[o.name].getData() as Float32Array;
        return new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
      }),
    );
  } finally {
    await session.release();
  }
}

/** `backend`, noting where each output of its sessions' runs lies ("cpu", "gpu-buffer"). */
function noteLocations(backend: Backend, locations: Set<string>): Backend {
  return {
    ...backend,
    async createSession(graph, options) {
      const session = await backend.createSession(graph, options);
      return {
        ...session,
        async run(feeds) {
          const out = await session.run(feeds);
          for (const t of Object.values(out)) locations.add(t.location);
          return out;
        },
      };
    },
  };
}

async function sameBytesSplit(backend: Backend) {
  const dir = await Deno.makeTempDir();
  try {
    for (const c of await cases(dir)) {
      const { size, shards } = await threeShards(c.path);
      assert.ok(shards >= 3, `${c.path} splits into ${shards} shards of ${size} bytes`);
      const whole = await outputs(backend, c);
      const opened: number[] = [];
      const sharding = withSharding(backend, {
        shardSize: size,
        onSharded: (_, bytes) => opened.push(bytes.length),
      });
      const split = await outputs(sharding, c);
      assert.deepEqual(opened, [shards]);
      assert.deepEqual(split, whole, c.path);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a graph split into 3 or more shards gives the same bytes as whole, on cpu", async () => {
  await sameBytesSplit(createNodeBackend(1));
});

const gpu = await webGpuForTests();
Deno.test({
  name: `a graph split into 3 or more shards gives the same bytes as whole, on WebGPU${
    gpu.ignored ? ` (ignored: ${gpu.ignored})` : ""
  }`,
  ignore: gpu.ignored !== undefined,
  fn: async () => {
    const locations = new Set<string>();
    await sameBytesSplit(noteLocations(await createWebBackend("webgpu", gpu.adapter), locations));
    // Between shards, tensors stayed in GPU buffers; the graph's outputs came back to the CPU.
    assert.deepEqual([...locations].sort(), ["cpu", "gpu-buffer"]);
  },
});

Deno.test("a node whose weights exceed the shard size is refused at load, with the figures", async () => {
  const backend = withSharding(createNodeBackend(1), { shardSize: 100 });
  await assert.rejects(
    backend.createSession({ path: `${models}z-image-turbo-tiny/transformer/model.onnx` }),
    (e: Error) =>
      e instanceof ModelLoadError &&
      /^Cannot load transformer\/model\.onnx \([\d.]+ KiB\) in shards of 100 B on cpu: node \S+ alone holds [\d.]+ KiB of weights, more than the shard size of 100 B; give a larger --shard-size$/
        .test(e.message),
  );
});

Deno.test("--shard-size takes auto, bytes, or K/M/G units", () => {
  assert.equal(parseShardSize("auto"), "auto");
  assert.equal(parseShardSize("4096"), 4096);
  assert.equal(parseShardSize("1.5G"), 1.5 * 2 ** 30);
  assert.equal(parseShardSize("512MiB"), 512 * 2 ** 20);
  assert.equal(parseShardSize("0"), undefined);
  assert.equal(parseShardSize("big"), undefined);
});
