/**
 * What a step cache's signal costs, in the denoiser's own FLOPs: the multiply-adds of every
 * `Conv`, `Gemm`, `MatMul` and `MatMulNBits` of the UNet (elementwise work left out, on both sides), counted from
 * the shapes one real forward gives them (each of their inputs and outputs is made a graph output
 * for that run), and of those the signal sub-graph keeps. Used by `deno task score --cache`
 * (through `signalFlopShare` of `compute/mod.ts`).
 *
 * @module
 */
import pkg from "onnx-proto";
import { selectBackend } from "../backends/device.ts";
import { decodeModel, encodeModel } from "../graph/model_bytes.ts";
import { cutSignal } from "../pipelines/signal_graph.ts";
import type { PipelineDefaults } from "../pipelines/pipeline.ts";

const COUNTED = new Set(["Conv", "Gemm", "MatMul", "MatMulNBits"]);

/**
 * Each signal's multiply-adds as a fraction of one UNet call's, at the model's default size with
 * a batch of 2 (its default guidance): `{ tea_cache, cache_dit }`.
 */
export async function cacheFlops(
  modelDir: string,
  defaults: PipelineDefaults,
): Promise<{ tea_cache: number; cache_dit: number }> {
  const model = decodeModel(await Deno.readFile(`${modelDir}/unet/model.onnx`))!;
  const graph = model.graph!;
  const counted = (graph.node ?? []).filter((n) => COUNTED.has(n.opType ?? ""));
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t.dims!.map(Number)]));
  const extra = new Set<string>();
  for (const n of counted) {
    for (const t of [n.input![0], n.input![1], n.output![0]]) if (!inits.has(t)) extra.add(t);
  }
  const outputs = new Set((graph.output ?? []).map((o) => o.name!));
  const probe: pkg.onnx.IModelProto = {
    ...model,
    graph: {
      ...graph,
      output: [
        ...(graph.output ?? []),
        ...[...extra].filter((t) => !outputs.has(t)).map((name) => ({
          name,
          type: { tensorType: { elemType: 1 } },
        })),
      ],
    },
  };
  const backend = await selectBackend("cpu", {});
  const session = await backend.createSession({
    bytes: encodeModel(probe),
    externalDataFolder: `${modelDir}/unet`,
  });
  const [h, w] = [defaults.height / 8, defaults.width / 8];
  const channels = Number(
    graph.input!.find((i) => i.name === "sample")!.type!.tensorType!.shape!.dim![1].dimValue,
  );
  const text = graph.input!.find((i) => i.name === "encoder_hidden_states")!.type!.tensorType!
    .shape!.dim!;
  const width = Number(text[2].dimValue);
  // The timestep as the graph declares it: a scalar, a fixed length, or one per batch row.
  const t = graph.input!.find((i) => i.name === "timestep")!.type!.tensorType!.shape!.dim!;
  const steps = t.length === 0 ? [] : [Number(t[0].dimValue) || 2];
  const out = await session.run({
    sample: backend.tensor("float32", new Float32Array(2 * channels * h * w), [2, channels, h, w]),
    timestep: backend.tensor(
      "float32",
      new Float32Array(steps.length ? steps[0] : 1).fill(500),
      steps,
    ),
    encoder_hidden_states: backend.tensor("float32", new Float32Array(2 * 77 * width), [
      2,
      77,
      width,
    ]),
  });
  const dims = (t: string) => inits.get(t) ?? [...out[t].dims];
  const macs = (n: pkg.onnx.INodeProto) => {
    const outElems = dims(n.output![0]).reduce((a, b) => a * b, 1);
    if (n.opType === "Conv") return outElems * dims(n.input![1]).slice(1).reduce((a, b) => a * b);
    const a = dims(n.input![0]);
    const transA = n.attribute?.find((x) => x.name === "transA")?.i;
    return outElems * (n.opType === "Gemm" && Number(transA) ? a[0] : a.at(-1)!);
  };
  const total = counted.reduce((s, n) => s + macs(n), 0);
  const fraction = (backend: "tea_cache" | "cache_dit") => {
    // Only the kept nodes' names are read: external weights need not be.
    const cut = cutSignal(model, backend, (_, __, length) => new Uint8Array(Math.max(0, length)))!;
    const kept = new Set(decodeModel(cut.bytes)!.graph!.node!.map((n) => n.name));
    return counted.filter((n) => kept.has(n.name)).reduce((s, n) => s + macs(n), 0) / total;
  };
  const result = { tea_cache: fraction("tea_cache"), cache_dit: fraction("cache_dit") };
  await session.release();
  return result;
}
