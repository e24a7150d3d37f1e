/**
 * Operators of ONNX Runtime's `com.microsoft` domain that some exports use but not every
 * execution provider implements (exports tuned for the CUDA provider, such as
 * `onnxruntime/sd-turbo`): rewriting those that standard operators express exactly, and naming
 * the provider that has the others.
 *
 * @module
 */
import type pkg from "onnx-proto";

type Model = pkg.onnx.IModelProto;

/**
 * Contrib operators with no CPU (or WebAssembly/WebGPU) kernel in ONNX Runtime 1.30, and the
 * provider that has one.
 */
export const PROVIDER_ONLY_OPS: Readonly<Record<string, string>> = {
  NhwcConv: "CUDA",
  GroupNorm: "CUDA",
  SkipGroupNorm: "CUDA",
  BiasSplitGelu: "CUDA",
  BiasAdd: "CUDA",
};

/** Operators {@linkcode rewriteProviderOps} replaces with standard ones. */
export const REWRITTEN_OPS: readonly string[] = ["NhwcConv"];

/** How ONNX Runtime's providers say they found no kernel for an operator (native, then web). */
const NO_KERNEL = [
  /Could not find an implementation for (\w+)\(\d+\)/,
  /Failed to find kernel for (?:[\w.]+\.)?(\w+)\(\d+\)/,
  /Provider type for (\w+) node with name .* is not set/,
];

/** The operator ONNX Runtime found no kernel for, if that is why its session creation failed. */
export function missingKernel(message: string): string | undefined {
  for (const pattern of NO_KERNEL) {
    const op = message.match(pattern)?.[1];
    if (op) return op;
  }
  return undefined;
}

/**
 * Replaces every `com.microsoft` `NhwcConv` (input and output NHWC, weights `[M, kh, kw, C/g]`,
 * as ONNX Runtime's `FusionNhwcConv` writes them) with `Transpose → Conv → Transpose`, the
 * weights transposed back to `[M, C/g, kh, kw]` by a `Transpose` node (ONNX Runtime folds it at
 * load). The fusion put a `Transpose` before and after each `NhwcConv`; ONNX Runtime's transpose
 * optimizer cancels those pairs. Returns how many nodes were replaced.
 */
export function rewriteProviderOps(model: Model): number {
  const graph = model.graph;
  if (!graph?.node) return 0;
  let count = 0;
  const nodes: pkg.onnx.INodeProto[] = [];
  for (const node of graph.node) {
    if (node.opType !== "NhwcConv" || node.domain !== "com.microsoft") {
      nodes.push(node);
      continue;
    }
    const name = node.name || `NhwcConv_${count}`;
    const [x, w, ...bias] = node.input ?? [];
    const transpose = (input: string, perm: number[], output: string) => ({
      opType: "Transpose",
      name: `${name}/${output}`,
      input: [input],
      output: [output],
      attribute: [{ name: "perm", type: 7, ints: perm }],
    });
    nodes.push(
      transpose(x, [0, 3, 1, 2], `${name}/nchw_input`),
      transpose(w, [0, 3, 1, 2], `${name}/nchw_weight`),
      {
        opType: "Conv",
        name: `${name}/Conv`,
        input: [`${name}/nchw_input`, `${name}/nchw_weight`, ...bias],
        output: [`${name}/nchw_output`],
        attribute: node.attribute,
      },
      transpose(`${name}/nchw_output`, [0, 2, 3, 1], node.output![0]),
    );
    count++;
  }
  graph.node = nodes;
  if (count > 0 && !nodes.some((n) => n.domain === "com.microsoft")) {
    model.opsetImport = model.opsetImport?.filter((o) => o.domain !== "com.microsoft");
  }
  return count;
}
