/**
 * Decoding a serialized ONNX model for a load-time rewrite.
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
