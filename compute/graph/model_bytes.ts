/**
 * Decoding and encoding a serialized ONNX model for a load-time rewrite, and a cheap look at the
 * bytes that spares the decode when a rewrite has nothing to find.
 *
 * @module
 */
import pkg from "onnx-proto";

/**
 * The model in `bytes`, or undefined when they are no model: the caller then opens the bytes as
 * they are, and ONNX Runtime says why they fail.
 */
export function decodeModel(bytes: Uint8Array): pkg.onnx.ModelProto | undefined {
  try {
    return pkg.onnx.ModelProto.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The serialized form of `model`. */
export function encodeModel(model: pkg.onnx.IModelProto): Uint8Array {
  return pkg.onnx.ModelProto.encode(model).finish();
}

/**
 * Whether `text` occurs anywhere in the serialized model: an operator type that a graph uses is
 * stored as a string in its nodes, so a model that does not mention it has no such node.
 */
export function mentions(bytes: Uint8Array, text: string): boolean {
  const needle = new TextEncoder().encode(text);
  for (let i = bytes.indexOf(needle[0]); i >= 0; i = bytes.indexOf(needle[0], i + 1)) {
    let j = 1;
    while (j < needle.length && bytes[i + j] === needle[j]) j++;
    if (j === needle.length) return true;
  }
  return false;
}
