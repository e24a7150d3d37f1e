/**
 * A small safetensors reader and writer (the format of LoRA adapters): an 8-byte little-endian
 * header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__}`,
 * then the tensor bytes. Nothing in the header is trusted: its length, every offset and size are
 * checked against the file and each other before a byte is read. No maintained npm package reads
 * safetensors from local bytes (`@huggingface/hub` only parses remote headers), hence this one.
 *
 * @module
 */
import { fromFloat16 } from "../backends/float16.ts";
import { InvalidInputError } from "../errors.ts";

/** A file that is not a well-formed safetensors file (a caller's input: HTTP 400). */
export class SafetensorsError extends InvalidInputError {
  override name = "SafetensorsError";
  override param = "lora";
}

/** Element types read here and their sizes in bytes. */
const DTYPE_SIZES = { F32: 4, F16: 2, BF16: 2, F64: 8 } as const;
/** A supported safetensors dtype. */
export type SafetensorsDtype = keyof typeof DTYPE_SIZES;

/** One tensor: its dtype, shape and raw little-endian bytes (a view into the file). */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

/** A parsed file. */
export interface Safetensors {
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsTensor>;
}

/** The largest header accepted (the format's own reference implementation caps it at 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lies in a file: its dtype, shape and byte span counted from the data start. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A parsed header: the data start in the file, the metadata and each tensor's entry. */
export interface SafetensorsHeader {
  dataStart: number;
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
}

/**
 * Parses the header of a safetensors file of `fileLength` bytes whose first bytes are `head`
 * (at least the 8-byte length and the header it announces, see {@linkcode headerLength}), checking
 * every size and offset against the file; throws {@linkcode SafetensorsError}.
 */
export function parseSafetensorsHeader(
  head: Uint8Array,
  fileLength: number,
  name = "adapter",
): SafetensorsHeader {
  const fail = (why: string): never => {
    throw new SafetensorsError(`${name} is not a valid safetensors file: ${why}`);
  };
  if (fileLength < 8) fail(`${fileLength} bytes, shorter than the 8-byte header length`);
  const length = headerLength(head);
  if (length > BigInt(Math.min(MAX_HEADER_BYTES, fileLength - 8))) {
    fail(`its header claims ${length} bytes, but the file has ${fileLength - 8} after the length`);
  }
  const dataStart = 8 + Number(length);
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(head.subarray(8, dataStart)),
    );
  } catch (e) {
    fail(`its header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("its header is not a JSON object");
  }
  const dataLength = fileLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  const spans: [number, number, string][] = [];
  for (const [key, entry] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        fail("__metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) fail(`tensor '${key}' is not an object`);
    if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_SIZES)) {
      fail(
        `tensor '${key}' has dtype ${JSON.stringify(e.dtype)} (supported: ${
          Object.keys(DTYPE_SIZES).join(", ")
        })`,
      );
    }
    const dtype = e.dtype as SafetensorsDtype;
    if (
      !Array.isArray(e.shape) || e.shape.length > 8 ||
      !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) fail(`tensor '${key}' has shape ${JSON.stringify(e.shape)}`);
    const shape = e.shape as number[];
    const offsets = e.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1] ||
      offsets[1] > dataLength
    ) {
      fail(
        `tensor '${key}' has data_offsets ${
          JSON.stringify(offsets)
        } outside the ${dataLength} data bytes`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[dtype];
    if (end - begin !== expected) {
      fail(
        `tensor '${key}' has ${end - begin} bytes, but ${dtype} ${
          JSON.stringify(shape)
        } needs ${expected}`,
      );
    }
    spans.push([begin, end, key]);
    entries.set(key, { dtype, shape, begin, end });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) {
      fail(`tensors '${spans[i - 1][2]}' and '${spans[i][2]}' overlap`);
    }
  }
  return { dataStart, metadata, entries };
}

/** The header length a file's first 8 bytes announce (0 when fewer than 8 are given). */
export function headerLength(head: Uint8Array): bigint {
  if (head.length < 8) return 0n;
  return new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
}

/** Parses `bytes` as safetensors, checking every size and offset; throws {@linkcode SafetensorsError}. */
export function parseSafetensors(bytes: Uint8Array, name = "adapter"): Safetensors {
  const { dataStart, metadata, entries } = parseSafetensorsHeader(bytes, bytes.length, name);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [key, { dtype, shape, begin, end }] of entries) {
    tensors.set(key, { dtype, shape, bytes: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return { metadata, tensors };
}

/** A tensor's values as float32. */
export function tensorToFloat32(t: SafetensorsTensor): Float32Array {
  const copy = t.bytes.slice(); // aligned
  switch (t.dtype) {
    case "F32":
      return new Float32Array(copy.buffer);
    case "F64":
      return Float32Array.from(new Float64Array(copy.buffer));
    case "F16":
      return fromFloat16(new Float16Array(copy.buffer));
    case "BF16": {
      const half = new Uint16Array(copy.buffer);
      const bits = new Uint32Array(half.length);
      for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
      return new Float32Array(bits.buffer);
    }
  }
}

/** Writes float32 tensors as a safetensors file (for fixtures and tests). */
export function serializeSafetensors(
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = {
      dtype: "F32",
      shape: t.shape,
      data_offsets: [offset, offset + t.data.byteLength],
    };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // the data stays 8-byte aligned
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
