/**
 * Merging adapters into a graph's weights: `W' = W + Σᵢ scaleᵢ · (alphaᵢ/rᵢ) · BᵢAᵢ`, written into
 * a copy of the graph's bytes at each target initializer's own offset (the bytes keep their
 * length, so nothing else in the file moves). Adapters are summed in the caller's order, so a
 * canonical order gives the same bytes however a request listed them.
 *
 * @module
 */
import { fromFloat16, toFloat16 } from "../backends/float16.ts";
import { int8Columns, int8Rows, Q4_BLOCK, q4Blocks } from "../graph/quantize.ts";
import { type LoraAdapter, type LoraComponent, LoraError, type LoraLayer } from "./adapter.ts";
import type { GraphWeights, Location, Quantization, WeightTarget } from "./graph_weights.ts";
import type { LowRankProduct } from "./low_rank_product.ts";

/** An adapter and the scale a request gave it. */
export interface ScaledAdapter {
  adapter: LoraAdapter;
  scale: number;
}

/** What to add to one weight: layers with their effective factor `scale · alpha/r`. */
export type MergePlan = Map<WeightTarget, { layer: LoraLayer; factor: number }[]>;

/** A graph's bytes: `model.onnx` and its external-data files by the name the graph gives them. */
export interface GraphBytes {
  model: Uint8Array;
  external: Map<string, Uint8Array>;
}

/**
 * Finds every layer's weight in the graphs it targets. Throws {@linkcode LoraError} naming the
 * first few keys that match nothing (and how many), or a shape that does not fit its weight.
 */
export function planMerge(
  adapters: readonly ScaledAdapter[],
  graphs: ReadonlyMap<LoraComponent, GraphWeights>,
): Map<LoraComponent, MergePlan> {
  const plans = new Map<LoraComponent, MergePlan>();
  const unmatched: string[] = [];
  for (const { adapter, scale } of adapters) {
    for (const layer of adapter.layers) {
      const graph = graphs.get(layer.component);
      const parts = graph && resolveLayer(layer, graph);
      if (!parts) {
        unmatched.push(
          `${layer.component === "denoiser" ? "" : `${layer.component}.`}${layer.module}`,
        );
        continue;
      }
      const plan = plans.get(layer.component) ?? new Map();
      plans.set(layer.component, plan);
      for (const [part, target] of parts) {
        checkShapes(part, target, adapter.source);
        const list = plan.get(target) ?? [];
        list.push({ layer: part, factor: scale * layer.multiplier });
        plan.set(target, list);
      }
    }
  }
  const unnamed = [...graphs].filter(([, g]) => g.byModule.size === 0 && g.byFlatName.size === 0);
  if (unmatched.length > 0 && unnamed.length > 0) {
    // An export whose optimizer renamed every node and weight (the published WebNN/ORT-web
    // exports' replicas do) leaves nothing to place a layer on, whatever the adapter.
    throw new LoraError(
      `LoRA adapters cannot be applied to this model: its ${
        unnamed.map(([c]) => c).join(" and ")
      } graph names no weight after its torch module (no '/<module>/MatMul' node or '<module>.weight' initializer), as optimized exports do; serve the model's diffusers checkpoint (converted at load) to use LoRA`,
    );
  }
  if (unmatched.length > 0) {
    const total = adapters.reduce((s, a) => s + a.adapter.layers.length, 0);
    throw new LoraError(
      `${unmatched.length} of ${total} LoRA layers match no weight of this model, e.g. ${
        unmatched.slice(0, 3).map((k) => `'${k}'`).join(", ")
      } (is the adapter for another model?)`,
    );
  }
  return plans;
}

/**
 * The weights a layer adapts: its own module, or, for checkpoints with fused projections (Z-Image's
 * original `attention.qkv` and `attention.out`), diffusers' split ones: B's rows are divided among
 * `to_q`, `to_k`, `to_v` in order, and `out` is `to_out.0`.
 */
function resolveLayer(
  layer: LoraLayer,
  graph: GraphWeights,
): [LoraLayer, WeightTarget][] | undefined {
  const sep = layer.flat ? "_" : ".";
  const find = (module: string) =>
    (layer.flat ? graph.byFlatName.get(module) : graph.byModule.get(module)) ?? undefined;
  const own = find(layer.module);
  if (own) return [[layer, own]];
  const [base, last] = [
    layer.module.slice(0, layer.module.lastIndexOf(sep)),
    layer.module.slice(layer.module.lastIndexOf(sep) + 1),
  ];
  if (last === "out") {
    const target = find(`${base}${sep}to_out${sep}0`);
    return target && [[layer, target]];
  }
  if (last !== "qkv") return undefined;
  const targets = ["to_q", "to_k", "to_v"].map((p) => find(`${base}${sep}${p}`));
  if (targets.some((t) => !t)) return undefined;
  const rank = layer.up.dims[1];
  let row = 0;
  return targets.map((target) => {
    const out = logicalShape(target!).out;
    const up = {
      data: layer.up.data.subarray(row * rank, (row + out) * rank),
      dims: [out, ...layer.up.dims.slice(1)],
    };
    row += out;
    return [{ ...layer, module: target!.module, up }, target!];
  });
}

/** The weight's torch shape `[out, in·kh·kw]` and, for convolutions, its kernel. */
function logicalShape(t: WeightTarget): { out: number; inFlat: number; kernel: number[] } {
  if (t.op === "Conv") {
    return { out: t.dims[0], inFlat: t.dims[1] * t.dims[2] * t.dims[3], kernel: t.dims.slice(2) };
  }
  const [out, inFlat] = t.transposed ? [t.dims[1], t.dims[0]] : [t.dims[0], t.dims[1]];
  return { out, inFlat, kernel: [1, 1] };
}

function checkShapes(layer: LoraLayer, target: WeightTarget, source: string): void {
  const { out, inFlat, kernel } = logicalShape(target);
  const downIn = layer.down.dims.slice(1).reduce((a, b) => a * b, 1);
  const downKernel = layer.down.dims.length === 4 ? layer.down.dims.slice(2) : [1, 1];
  if (
    layer.up.dims[0] !== out || downIn !== inFlat || downKernel.join() !== kernel.join()
  ) {
    throw new LoraError(
      `${source}: ${layer.module}: the factors A [${layer.down.dims}] and B [${layer.up.dims}] do not fit the model's weight [${out}, ${
        inFlat / (kernel[0] * kernel[1])
      }${target.op === "Conv" ? `, ${kernel}` : ""}]`,
    );
  }
}

/**
 * Adds each planned delta to its weight in `bytes` (in place). The layers of one weight are
 * stacked along the rank, factors folded into B, so that one product `[B₁·f₁ | B₂·f₂ …]·[A₁; A₂ …]`
 * gives their sum.
 */
export async function applyPlan(
  plan: MergePlan,
  bytes: GraphBytes,
  product: LowRankProduct,
): Promise<void> {
  for (const [target, layers] of plan) {
    const { out, inFlat } = logicalShape(target);
    const rank = layers.reduce((s, { layer }) => s + layer.down.dims[0], 0);
    const b = new Float32Array(out * rank);
    const a = new Float32Array(rank * inFlat);
    let r0 = 0;
    for (const { layer, factor } of layers) {
      const r = layer.down.dims[0];
      for (let o = 0; o < out; o++) {
        for (let j = 0; j < r; j++) b[o * rank + r0 + j] = factor * layer.up.data[o * r + j];
      }
      a.set(layer.down.data, r0 * inFlat);
      r0 += r;
    }
    const delta = await product.multiply(b, a, out, rank, inFlat);
    const region = at(bytes, target.location);
    // float32 weights at an aligned offset are changed where they lie; others through a copy.
    const inPlace = target.dtype === "float32" && region.byteOffset % 4 === 0;
    const weights = inPlace
      ? new Float32Array(region.buffer, region.byteOffset, region.length / 4)
      : weightValues(target, bytes);
    addDelta(weights, delta, target.transposed, out, inFlat);
    if (inPlace) continue;
    if (target.quantization) {
      // Quantized again with fresh scales (the bytes keep their size).
      const q = quantize(target, weights);
      region.set(q.values);
      at(bytes, target.quantization.scales).set(
        new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength),
      );
      continue;
    }
    const stored = target.dtype === "float32" ? weights : toFloat16(weights);
    region.set(new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength));
  }
}

/**
 * A target's weight as float32 values in its stored layout (`MatMulNBits`: torch's `[N, K]`):
 * a copy, dequantized where the graph quantized it.
 */
export function weightValues(target: WeightTarget, bytes: GraphBytes): Float32Array {
  const region = at(bytes, target.location);
  if (target.quantization) {
    return dequantize(target, target.quantization, region, at(bytes, target.quantization.scales));
  }
  return target.dtype === "float32"
    ? new Float32Array(region.slice().buffer)
    : fromFloat16(new Float16Array(region.slice().buffer));
}

/** The bytes at `location` in the graph's files (a view: writing to it changes them). */
function at(bytes: GraphBytes, location: Location): Uint8Array {
  const file = location.file === undefined ? bytes.model : bytes.external.get(location.file);
  if (!file) throw new LoraError(`external data '${location.file}' was not loaded`);
  return file.subarray(location.offset, location.offset + location.length);
}

/** `weights += Δ` (`Δ` `[out, in]`; weights stored `[in, out]` take Δᵀ). */
function addDelta(
  weights: Float32Array,
  delta: Float32Array,
  transposed: boolean,
  out: number,
  inFlat: number,
): void {
  if (transposed) {
    for (let o = 0; o < out; o++) {
      for (let k = 0; k < inFlat; k++) weights[k * out + o] += delta[o * inFlat + k];
    }
  } else {
    for (let i = 0; i < weights.length; i++) weights[i] += delta[i];
  }
}

/** A quantized weight's float values, in its stored layout (`MatMulNBits`: `[N, K]`). */
function dequantize(
  target: WeightTarget,
  q: Quantization,
  values: Uint8Array,
  scaleBytes: Uint8Array,
): Float32Array {
  const scales = new Float32Array(scaleBytes.slice().buffer);
  // A conv kernel's (int8, axis 0) row is all of one output channel's `[in, kh, kw]`.
  const size = target.dims.reduce((a, b) => a * b, 1);
  const rows = q.kind === "q4" ? q.rows : target.dims[0], cols = size / rows;
  const w = new Float32Array(size);
  if (q.kind === "int8") {
    const ints = new Int8Array(values.buffer, values.byteOffset, values.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        w[r * cols + c] = ints[r * cols + c] * scales[q.axis === 0 ? r : c];
      }
    }
    return w;
  }
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const block = n * q.blocks + Math.floor(k / Q4_BLOCK), j = k % Q4_BLOCK;
      const byte = values[block * (Q4_BLOCK / 2) + (j >> 1)];
      w[n * cols + k] = (((j & 1) ? byte >> 4 : byte & 15) - 8) * scales[block];
    }
  }
  return w;
}

/** Float values in a quantized weight's stored layout → its values' bytes and scales. */
function quantize(
  target: WeightTarget,
  weights: Float32Array,
): { values: Uint8Array; scales: Float32Array } {
  const q = target.quantization!;
  if (q.kind === "q4") {
    const { packed, scales } = q4Blocks(weights, q.rows);
    return { values: packed, scales };
  }
  const { values, scales } = q.axis === 0
    ? int8Rows(weights, target.dims[0])
    : int8Columns(weights, target.dims[0]);
  return { values: new Uint8Array(values.buffer), scales };
}
