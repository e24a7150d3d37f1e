/**
 * The load-time rewrites a backend applies to a serialized model, on one decode of its bytes:
 * WebGPU's `Conv` channel padding (./conv_channel_padding.ts), which the graph needs to compute
 * right there, and attention fusion (./attention_fusion.ts), which makes a graph to try first.
 *
 * @module
 */
import { fuseAttention } from "./attention_fusion.ts";
import { padConvChannels } from "./conv_channel_padding.ts";
import { decodeModel, encodeModel, mentions } from "./model_bytes.ts";

/** Which rewrites to apply. */
export interface LoadRewrites {
  /** Pad `Conv` input channels to a multiple of 4 (WebGPU). */
  padConvChannels?: boolean;
  /** Fuse exported attention into `MultiHeadAttention`. */
  fuseAttention?: boolean;
  /** Renames the external-data files that rewritten graphs' initializers point to (old → new). */
  externalFiles?: ReadonlyMap<string, string>;
}

/** The graphs to open: `exported` always; `fused`, to try first, when some attention fused. */
export interface LoadGraphs {
  exported: Uint8Array;
  fused?: Uint8Array;
}

/**
 * `bytes` with the rewrites of `options`: decoded at most once, and not at all when the bytes
 * mention none of the operators the rewrites look for. Bytes that are no model come back as they
 * are, for ONNX Runtime to say why they fail.
 */
export function rewriteForLoad(bytes: Uint8Array, options: LoadRewrites): LoadGraphs {
  const pad = options.padConvChannels === true && mentions(bytes, "Conv");
  const fuse = options.fuseAttention === true && mentions(bytes, "Softmax");
  const model = pad || fuse ? decodeModel(bytes) : undefined;
  if (!model) return { exported: bytes };
  for (const init of model.graph?.initializer ?? []) {
    const location = init.externalData?.find((e) => e.key === "location");
    const renamed = location && options.externalFiles?.get(location.value ?? "");
    if (renamed) location.value = renamed;
  }
  const exported = pad && padConvChannels(model).length > 0 ? encodeModel(model) : bytes;
  const fused = fuse && fuseAttention(model).length > 0 ? encodeModel(model) : undefined;
  return { exported, fused };
}
