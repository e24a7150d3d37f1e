/**
 * The converter's entry point: published PyTorch checkpoints (diffusers folders, components,
 * single-file checkpoints in `.safetensors`) to model folders of ONNX graphs that
 * `loadPipeline` serves. `deno task convert` (`main.ts`) is its command line.
 *
 * It imports ONNX's protobuf encoder and the graph builder, so it is not part of the light
 * `compute/mod.ts`.
 *
 * @module
 */
export { convert, type ConvertOptions, DTYPES } from "./convert.ts";
export {
  parseSafetensors,
  type Safetensors,
  SafetensorsError,
  type SafetensorsTensor,
  tensorToFloat32,
} from "../lora/safetensors.ts";
