/**
 * A load-time rewrite for onnxruntime-web's WebGPU `Conv`, which miscomputes some convolutions
 * whose input channel count is not a multiple of 4: measured with 1.30 on lavapipe, a 3×3 `Conv`
 * to 32 channels over 32×32 is wrong by up to 3 (on outputs of size ~2) with 6, 9, 15 or 18 input
 * channels, and right with 2, 3, 4, 8, 10, 12, 14, 16, 17, 20, 22, 24, 26 or 34 (upstream:
 * microsoft/onnxruntime#29651). shapes-tiny's `conv_in` reads 18 channels; SD inpainting UNets
 * read 9.
 *
 * Each such `Conv` (group 1, a kernel larger than 1×1, more than 4 input channels, not a multiple
 * of 4, its weight an initializer stored in the model) gets its input padded with zero channels up
 * to the next multiple of 4 by a `Pad` node, and its weight padded with zeros to match, so its
 * output is the same number for number.
 *
 * @module
 */
import pkg from "onnx-proto";

const { onnx } = pkg;
type Tensor = pkg.onnx.ITensorProto;

/** One `Conv` padded by {@linkcode padConvChannels}. */
export interface PaddedConv {
  name: string;
  from: number;
  to: number;
}

const BYTES: Partial<Record<number, number>> = {
  [onnx.TensorProto.DataType.FLOAT]: 4,
  [onnx.TensorProto.DataType.FLOAT16]: 2,
};

/** Pads, in place, every `Conv` of the model that the module comment describes. */
export function padConvChannels(model: pkg.onnx.IModelProto): PaddedConv[] {
  const graph = model.graph;
  const opset = model.opsetImport?.find((o) => !o.domain)?.version;
  // Pad takes its pads as an input from opset 11 on.
  if (!graph?.node || Number(opset ?? 0) < 11) return [];
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const padded: PaddedConv[] = [];
  const nodes: pkg.onnx.INodeProto[] = [];
  for (const node of graph.node) {
    const weight = node.opType === "Conv" ? initializers.get(node.input?.[1] ?? "") : undefined;
    const widened = weight && conditionsHold(node, weight) ? widenWeight(weight) : undefined;
    if (!widened) {
      nodes.push(node);
      continue;
    }
    const { tensor, from, to } = widened;
    const name = node.name || node.output?.[0] || `conv${padded.length}`;
    const pads = onnx.TensorProto.create({
      name: `${name}/channel_pads`,
      dataType: onnx.TensorProto.DataType.INT64,
      dims: [8],
      int64Data: [0, 0, 0, 0, 0, to - from, 0, 0],
    });
    const paddedInput = `${name}/channel_padded_input`;
    graph.initializer!.push(tensor, pads);
    nodes.push(
      onnx.NodeProto.create({
        name: `${name}/ChannelPad`,
        opType: "Pad",
        input: [node.input![0], pads.name],
        output: [paddedInput],
      }),
    );
    node.input = [paddedInput, tensor.name!, ...node.input!.slice(2)];
    nodes.push(node);
    padded.push({ name, from, to });
  }
  graph.node = nodes;
  const read = new Set(nodes.flatMap((n) => n.input ?? []));
  graph.initializer = graph.initializer!.filter((t) => read.has(t.name ?? ""));
  return padded;
}

function conditionsHold(node: pkg.onnx.INodeProto, weight: Tensor): boolean {
  const group = node.attribute?.find((a) => a.name === "group")?.i ?? 1;
  const dims = (weight.dims ?? []).map(Number);
  return Number(group) === 1 && dims.length === 4 && dims[2] * dims[3] > 1 && dims[1] > 4 &&
    dims[1] % 4 !== 0 && weight.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL &&
    BYTES[weight.dataType ?? 0] !== undefined;
}

/** The weight `[O, C, kh, kw]` as `[O, C', kh, kw]`, C' the next multiple of 4, zeros added. */
function widenWeight(weight: Tensor): { tensor: Tensor; from: number; to: number } | undefined {
  const [o, c, kh, kw] = (weight.dims ?? []).map(Number);
  const size = BYTES[weight.dataType ?? 0]!;
  const raw = weight.rawData && weight.rawData.length > 0
    ? weight.rawData
    : weight.dataType === onnx.TensorProto.DataType.FLOAT && weight.floatData?.length
    ? new Uint8Array(Float32Array.from(weight.floatData).buffer)
    : undefined;
  if (!raw || raw.length !== o * c * kh * kw * size) return undefined;
  const to = Math.ceil(c / 4) * 4;
  const rowIn = c * kh * kw * size, rowOut = to * kh * kw * size;
  const out = new Uint8Array(o * rowOut);
  for (let i = 0; i < o; i++) out.set(raw.subarray(i * rowIn, (i + 1) * rowIn), i * rowOut);
  return {
    tensor: onnx.TensorProto.create({
      name: `${weight.name}/channel_padded`,
      dataType: weight.dataType,
      dims: [o, to, kh, kw],
      rawData: out,
    }),
    from: c,
    to,
  };
}
