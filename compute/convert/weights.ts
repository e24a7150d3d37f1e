/**
 * The tensors of a component's safetensors file(s) as a {@linkcode WeightSource}: looked up by
 * parameter name, shape-checked, converted exactly to float32 (F32, F16, BF16, F64), and counted
 * so that a tensor the architecture never asked for is an error rather than silently dropped.
 *
 * @module
 */
import type { WeightSource } from "../graph/onnx_builder.ts";
import { ConvertError } from "../errors.ts";
import { parseSafetensors, type SafetensorsTensor, tensorToFloat32 } from "../lora/safetensors.ts";

/** File extensions of pickled PyTorch checkpoints, which this converter never opens. */
export const PICKLE_EXTENSIONS = [".ckpt", ".bin", ".pt", ".pth", ".pkl"];

/** The refusal of a pickled checkpoint, one line. */
export function pickleRefusal(path: string): ConvertError {
  return new ConvertError(
    `${path} is a pickled PyTorch checkpoint: refused (unpickling runs arbitrary code); convert it to .safetensors first`,
  );
}

/** Reads and parses one safetensors file; a malformed one is a {@linkcode ConvertError}. */
export async function readSafetensors(path: string): Promise<Map<string, SafetensorsTensor>> {
  if (PICKLE_EXTENSIONS.some((ext) => path.endsWith(ext))) throw pickleRefusal(path);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new ConvertError(`Cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return parseSafetensors(bytes, path).tensors;
  } catch (e) {
    throw new ConvertError((e as Error).message);
  }
}

/** Where a parameter is stored when not under its own name (single-file checkpoints). */
export interface MappedTensor {
  /** The stored tensor's key. */
  key: string;
  /** Trailing 1-sized dimensions dropped (a 1×1 conv stored for a Linear). */
  squeeze?: boolean;
  /** A 2-D tensor stored transposed (OpenCLIP's `text_projection`, applied as `x @ P`). */
  transpose?: boolean;
  /** Part `[i, n]` of a tensor joining `n` parameters along its first dimension (`in_proj`). */
  part?: [number, number];
}

/** Named tensors drawn from safetensors files, counting which were used. */
export class SafetensorsWeights implements WeightSource {
  readonly #tensors: ReadonlyMap<string, SafetensorsTensor>;
  readonly #names: ReadonlyMap<string, MappedTensor>;
  readonly #used = new Set<string>();

  /**
   * `tensors` from `label` (the file, for messages); `names` maps a parameter name to the stored
   * tensor(s) when they are not stored under that name (single-file checkpoints).
   */
  constructor(
    readonly label: string,
    tensors: ReadonlyMap<string, SafetensorsTensor>,
    names: ReadonlyMap<string, MappedTensor> = new Map(),
  ) {
    this.#tensors = tensors;
    this.#names = names;
  }

  take(name: string, dims: readonly number[]): Float32Array {
    const { key, squeeze, transpose, part } = this.#names.get(name) ?? { key: name };
    const t = this.#tensors.get(key);
    if (!t) {
      throw new ConvertError(
        `${this.label} has no tensor '${key}'${
          key === name ? "" : ` (for '${name}')`
        }: the weights do not fit the config`,
      );
    }
    this.#used.add(key);
    const shape = [...t.shape];
    while (squeeze && shape.length > dims.length && shape.at(-1) === 1) shape.pop();
    if (transpose && shape.length === 2) shape.reverse();
    if (part && shape.length) shape[0] /= part[1];
    if (shape.length !== dims.length || shape.some((d, i) => d !== dims[i])) {
      throw new ConvertError(
        `${this.label}: tensor '${key}' has shape [${t.shape}], but the config needs [${dims}]${
          key === name ? "" : ` for '${name}'`
        }`,
      );
    }
    const data = tensorToFloat32(t);
    if (part) {
      const size = data.length / part[1];
      return data.slice(part[0] * size, (part[0] + 1) * size);
    }
    if (transpose) {
      const [rows, cols] = dims;
      const out = new Float32Array(data.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) out[r * cols + c] = data[c * rows + r];
      }
      return out;
    }
    return data;
  }

  /** Stored tensors nothing asked for, ignoring `ignored` (buffers such as `position_ids`). */
  unused(ignored: (key: string) => boolean = () => false): string[] {
    return [...this.#tensors.keys()].filter((k) => !this.#used.has(k) && !ignored(k));
  }

  /** Throws when a stored tensor was never used: the config describes a smaller network. */
  checkAllUsed(ignored?: (key: string) => boolean): void {
    const left = this.unused(ignored);
    if (left.length) {
      throw new ConvertError(
        `${this.label}: ${left.length} tensor(s) the config has no place for (first: '${
          left[0]
        }'): the weights do not fit the config`,
      );
    }
  }
}
