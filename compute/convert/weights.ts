/**
 * The tensors of a component's safetensors file(s) as a {@linkcode WeightSource}: looked up by
 * parameter name, shape-checked, converted exactly to float32 (F32, F16, BF16, F64), and counted
 * so that a tensor the architecture never asked for is an error rather than silently dropped.
 *
 * Only the headers are read up front; each tensor is read from its file when the graph asks for it
 * (one positioned read into its float32 buffer), so a checkpoint is never held in memory whole.
 *
 * @module
 */
import type { WeightEncoding, WeightSource } from "../graph/onnx_builder.ts";
import { BF16_TO_F16, F16_TO_F32 } from "../backends/float16.ts";
import { ConvertError } from "../errors.ts";
import {
  headerLength,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  type SafetensorsDtype,
} from "../lora/safetensors.ts";

/** File extensions of pickled PyTorch checkpoints, which this converter never opens. */
export const PICKLE_EXTENSIONS = [".ckpt", ".bin", ".pt", ".pth", ".pkl"];

/** The refusal of a pickled checkpoint, one line. */
export function pickleRefusal(path: string): ConvertError {
  return new ConvertError(
    `${path} is a pickled PyTorch checkpoint: refused (unpickling runs arbitrary code); convert it to .safetensors first`,
  );
}

/** Bytes per element of each stored dtype. */
const ELEMENT_SIZE = { F32: 4, F16: 2, BF16: 2, F64: 8 } as const;

/** A tensor of a safetensors file: its dtype, shape and where its bytes lie in the file. */
export interface StoredTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The file. */
  path: string;
  /** The first byte's position in the file. */
  offset: number;
  /** Its size in bytes. */
  length: number;
}

/**
 * Reads the header of one safetensors file (not its tensors), checked against the file's size; a
 * malformed one is a {@linkcode ConvertError}.
 */
export async function readSafetensors(path: string): Promise<Map<string, StoredTensor>> {
  if (PICKLE_EXTENSIONS.some((ext) => path.endsWith(ext))) throw pickleRefusal(path);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new ConvertError(`Cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const size = (await file.stat()).size;
    let head = await readAt(file, 0, Math.min(8, size));
    const length = headerLength(head);
    // A length the file cannot hold is refused by the parser before anything more is read.
    if (head.length === 8 && length <= BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      head = await readAt(file, 0, 8 + Number(length));
    }
    const { dataStart, entries } = parseSafetensorsHeader(head, size, path);
    const tensors = new Map<string, StoredTensor>();
    for (const [key, { dtype, shape, begin, end }] of entries) {
      tensors.set(key, { dtype, shape, path, offset: dataStart + begin, length: end - begin });
    }
    return tensors;
  } catch (e) {
    if (e instanceof ConvertError) throw e;
    throw new ConvertError((e as Error).message);
  } finally {
    file.close();
  }
}

/** `length` bytes of `file` from `offset`. */
async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  for (let at = 0; at < length;) {
    const n = await file.read(out.subarray(at));
    if (n === null) throw new ConvertError(`${length - at} bytes short of the header`);
    at += n;
  }
  return out;
}

/** Fills `out` from `path` at `offset` (a file changed under us is an error, never zeros). */
function readInto(path: string, offset: number, out: Uint8Array): void {
  const file = Deno.openSync(path);
  try {
    file.seekSync(offset, Deno.SeekMode.Start);
    for (let at = 0; at < out.length;) {
      const n = file.readSync(out.subarray(at));
      if (n === null) throw new ConvertError(`${path} ended while reading a tensor (truncated?)`);
      at += n;
    }
  } finally {
    file.close();
  }
}

/**
 * A stored tensor's values as float32, exactly: read into the float32 buffer itself and widened in
 * place, from the back half forward (each element is read before the write that covers it). Into
 * `buffer` when it is large enough (reused, which spares the page faults of a fresh allocation).
 */
export function readFloat32(t: StoredTensor, buffer?: ArrayBuffer): Float32Array {
  const count = t.length / ELEMENT_SIZE[t.dtype];
  if (t.dtype === "F64") {
    const wide = new Float64Array(count);
    readInto(t.path, t.offset, new Uint8Array(wide.buffer));
    return Float32Array.from(wide);
  }
  const out = buffer && buffer.byteLength >= count * 4
    ? new Float32Array(buffer, 0, count)
    : new Float32Array(count);
  const bytes = new Uint8Array(out.buffer, 0, count * 4);
  if (t.dtype === "F32") {
    readInto(t.path, t.offset, bytes);
    return out;
  }
  // Two-byte elements land in the upper half; element i is widened into bytes [4i, 4i + 4).
  readInto(t.path, t.offset, bytes.subarray(2 * count));
  const half = new Uint16Array(out.buffer);
  if (t.dtype === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = half[count + i] << 16;
  } else {
    for (let i = 0; i < count; i++) out[i] = F16_TO_F32[half[count + i]];
  }
  return out;
}

/**
 * Tile of {@linkcode transposeBf16}: 256 rows of 64 bfloat16 (two cache lines each) read down
 * their columns, each column written as one run of the output. Measured (a microbenchmark of the
 * loops alone) on a 10240×3840 weight against widening first, then transposing float32 in 64×64
 * tiles: 69 against 113–162 ms to float32; to float16, 64 against 220 ms (that then narrowed with a
 * `Float16Array` `set`).
 */
const TILE_ROWS = 256;
const TILE_COLS = 64;

/**
 * bfloat16 `[rows, cols]` → `[cols, rows]` in one pass: widened to float32 bits into a
 * `Uint32Array`, or narrowed to float16 bits (round to nearest even) into a `Uint16Array`.
 */
function transposeBf16(bf16: Uint16Array, rows: number, out: Uint32Array | Uint16Array): void {
  const cols = bf16.length / rows;
  const wide = out instanceof Uint32Array;
  for (let r0 = 0; r0 < rows; r0 += TILE_ROWS) {
    const r1 = Math.min(r0 + TILE_ROWS, rows);
    for (let c0 = 0; c0 < cols; c0 += TILE_COLS) {
      const c1 = Math.min(c0 + TILE_COLS, cols);
      for (let c = c0; c < c1; c++) {
        let o = c * rows + r0;
        let i = r0 * cols + c;
        // Two loops rather than a branch per element: each stays a tight monomorphic loop.
        if (wide) {
          for (let r = r0; r < r1; r++, i += cols) out[o++] = bf16[i] << 16;
        } else {
          for (let r = r0; r < r1; r++, i += cols) out[o++] = BF16_TO_F16[bf16[i]];
        }
      }
    }
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
  readonly #tensors: ReadonlyMap<string, StoredTensor>;
  readonly #names: ReadonlyMap<string, MappedTensor>;
  readonly #used = new Set<string>();
  /** The buffer tensors are read into when lent (see {@linkcode take}), grown when too small. */
  #scratch = new ArrayBuffer(0);
  /** The buffer stored bytes are read into when {@linkcode lendEncoded} transposes them. */
  #raw = new ArrayBuffer(0);
  /**
   * Told the stored bytes behind each tensor handed out (a part's share of its tensor), as it is
   * read: a conversion's progress counts them.
   */
  onRead?: (bytes: number) => void;

  /**
   * `tensors` from `label` (the file, for messages); `names` maps a parameter name to the stored
   * tensor(s) when they are not stored under that name (single-file checkpoints).
   */
  constructor(
    readonly label: string,
    tensors: ReadonlyMap<string, StoredTensor>,
    names: ReadonlyMap<string, MappedTensor> = new Map(),
  ) {
    this.#tensors = tensors;
    this.#names = names;
  }

  /** Whether a tensor is stored under `key` (or mapped to that name). */
  has(key: string): boolean {
    return this.#tensors.has(key) || this.#names.has(key);
  }

  take(name: string, dims: readonly number[]): Float32Array {
    const { t, transpose, part } = this.#stored(name, dims);
    const data = readFloat32(t);
    this.onRead?.(t.length / (part?.[1] ?? 1));
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

  /**
   * The stored tensor of parameter `name` and how it maps onto it, checked against `dims` and
   * counted as used.
   */
  #stored(
    name: string,
    dims: readonly number[],
  ): { t: StoredTensor; transpose?: boolean; part?: [number, number] } {
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
    return { t, transpose, part };
  }

  /**
   * Like {@linkcode take}, but into a buffer reused by the next call: for a graph builder that
   * writes each tensor out before asking for the next. A part or a transposed tensor (single
   * files only) is taken as a copy of its own.
   */
  lend(name: string, dims: readonly number[]): Float32Array {
    const stored = this.#stored(name, dims);
    if (stored.part || stored.transpose) return this.take(name, dims);
    const { t } = stored;
    const bytes = t.length / ELEMENT_SIZE[t.dtype] * 4;
    this.#scratch = grown(this.#scratch, bytes);
    const values = readFloat32(t, this.#scratch);
    this.onRead?.(t.length);
    return values;
  }

  /**
   * A bfloat16 tensor as its initializer's bytes, converted in one pass from the stored ones
   * (see `WeightSource.lendEncoded`); lent like {@linkcode lend}. `undefined` for other stored
   * dtypes and for mapped parts or transposes (single files), which {@linkcode lend} serves.
   */
  lendEncoded(
    name: string,
    dims: readonly number[],
    encoding: WeightEncoding,
  ): Uint8Array | undefined {
    const { t, part, transpose } = this.#stored(name, dims);
    if (t.dtype !== "BF16" || part || transpose) return undefined;
    const out = this.#encoded(t, dims[0], encoding);
    this.onRead?.(t.length);
    return out;
  }

  /** `t` (bfloat16) in `encoding`, into the scratch buffer; `rows`: its first dimension. */
  #encoded(t: StoredTensor, rows: number, encoding: WeightEncoding): Uint8Array {
    const count = t.length / 2;
    const size = encoding.half ? 2 : 4;
    this.#scratch = grown(this.#scratch, count * size);
    const out = new Uint8Array(this.#scratch, 0, count * size);
    if (encoding.transpose) {
      this.#raw = grown(this.#raw, t.length);
      const raw = new Uint16Array(this.#raw, 0, count);
      readInto(t.path, t.offset, new Uint8Array(raw.buffer, 0, t.length));
      transposeBf16(
        raw,
        rows,
        encoding.half
          ? new Uint16Array(out.buffer, 0, count)
          : new Uint32Array(out.buffer, 0, count),
      );
      return out;
    }
    if (!encoding.half) return new Uint8Array(readFloat32(t, this.#scratch).buffer, 0, count * 4);
    // In place: each element's float16 bits over its bfloat16 ones.
    readInto(t.path, t.offset, out);
    const bits = new Uint16Array(out.buffer, 0, count);
    for (let i = 0; i < count; i++) bits[i] = BF16_TO_F16[bits[i]];
    return out;
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

/** `buffer`, or a new one of `bytes` when it is smaller. */
function grown(buffer: ArrayBuffer, bytes: number): ArrayBuffer {
  return buffer.byteLength < bytes ? new ArrayBuffer(bytes) : buffer;
}
