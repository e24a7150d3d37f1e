/**
 * PNG encoding on several cores. A PNG holds one zlib stream, which zlib (and so libvips) writes on
 * one thread: a 1024² image takes ~30–40 ms here at the fastest level. As pigz does, the image is cut
 * into horizontal stripes, each deflated on its own worker and ended with a sync flush (a byte
 * boundary, no final block), so that the pieces concatenate into one valid deflate stream; the
 * stripes' Adler-32 checksums combine into the stream's. Each stripe becomes its own `IDAT`
 * chunk, which PNG allows, so its CRC is computed on its worker too. Stripes start with an empty
 * dictionary, so files are a little larger than one stream's (docs/benchmarks.md, "Encoding").
 *
 * @module
 */
import zlib from "node:zlib";
import type { RgbImage } from "../pipelines/pipeline.ts";

/** One stripe to deflate (HTTP thread → worker). */
export interface StripeJob {
  id: number;
  /** The stripe's rows, RGB, `width × 3` bytes each. */
  rgb: Uint8Array;
  width: number;
  level: number;
  /** The last stripe ends the stream; the others end with a sync flush. */
  last: boolean;
}

/** A deflated stripe (worker → HTTP thread). */
export interface StripeResult {
  id: number;
  deflated: Uint8Array;
  /** CRC-32 of the `IDAT` chunk holding `deflated`. */
  crc: number;
  /** Adler-32 of the stripe's scanlines, and their length, to combine into the stream's. */
  adler: number;
  length: number;
}

/** Images smaller than this many pixels are not worth the workers' round trip. */
export const MIN_STRIPED_PIXELS = 512 * 512;

const BASE = 65521;

/** Adler-32 of `bytes` (RFC 1950), continuing from `start`. */
export function adler32(bytes: Uint8Array, start = 1): number {
  let a = start & 0xffff, b = start >>> 16;
  // 5552 bytes is the most that cannot overflow b before the modulo (zlib's NMAX).
  for (let i = 0; i < bytes.length;) {
    const end = Math.min(bytes.length, i + 5552);
    for (; i < end; i++) {
      a += bytes[i];
      b += a;
    }
    a %= BASE;
    b %= BASE;
  }
  return ((b << 16) | a) >>> 0;
}

/** The Adler-32 of two byte runs back to back, from each one's checksum and the second's length. */
export function adler32Combine(first: number, second: number, secondLength: number): number {
  const n = secondLength % BASE;
  const a1 = first & 0xffff, b1 = first >>> 16;
  const a2 = second & 0xffff, b2 = second >>> 16;
  // second's sums started from a = 1, b = 0; shift them onto first's: a adds a1 − 1, and b adds
  // n·(a1 − 1) plus b1 (each of the n bytes' running a carried a1 − 1 more).
  const a = (a1 + a2 - 1 + BASE) % BASE;
  const b = (b1 + b2 + ((n * ((a1 - 1 + BASE) % BASE)) % BASE)) % BASE;
  return ((b << 16) | a) >>> 0;
}

/**
 * A pool of workers that encode large PNGs in stripes, one stripe per worker. They start with the
 * pool, so that their fixed cost (~20 MiB each) is part of a server's baseline rather than growth
 * after its first large image.
 */
export class PngWorkers {
  readonly #workers: Worker[];
  readonly #pending = new Map<
    number,
    { resolve: (r: StripeResult) => void; reject: (e: Error) => void }
  >();
  #nextId = 0;

  /** Starts `count` workers (default: every core, at most 4). */
  constructor(count = Math.min(4, navigator.hardwareConcurrency)) {
    this.#workers = Array.from({ length: count }, () => {
      const worker = new Worker(new URL("./png_stripe_worker.ts", import.meta.url), {
        type: "module",
      });
      worker.onmessage = ({ data }: MessageEvent<StripeResult>) => {
        this.#pending.get(data.id)?.resolve(data);
        this.#pending.delete(data.id);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        this.#failAll(new Error(`PNG worker failed: ${event.message}`));
      };
      return worker;
    });
  }

  /** The PNG of `image` at zlib `level` (no row filters, as the single-stream encoder). */
  async encode(image: RgbImage, level: number): Promise<Uint8Array> {
    const { width, height, data } = image;
    const stripes = Math.min(this.#workers.length, height);
    const results = await Promise.all(
      Array.from({ length: stripes }, (_, k) => {
        const [from, to] = [k, k + 1].map((i) => Math.round(i * height / stripes) * width * 3);
        // A copy: the job's buffer is transferred, and the caller keeps its image.
        const rgb = data.slice(from, to);
        return this.#run(k, { id: this.#nextId++, rgb, width, level, last: k === stripes - 1 });
      }),
    );
    let adler = 1;
    for (const r of results) adler = adler32Combine(adler, r.adler, r.length);
    const header = new Uint8Array(13);
    const view = new DataView(header.buffer);
    view.setUint32(0, width);
    view.setUint32(4, height);
    header.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter method variants, no interlace
    const trailer = new Uint8Array(4);
    new DataView(trailer.buffer).setUint32(0, adler);
    const parts = [
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
      chunk("IHDR", header),
      chunk("IDAT", zlibHeader(level)),
      ...results.map((r) => chunk("IDAT", r.deflated, r.crc)),
      chunk("IDAT", trailer),
      chunk("IEND", new Uint8Array(0)),
    ];
    const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      png.set(p, at);
      at += p.length;
    }
    return png;
  }

  /** Stops the workers; encodes in flight fail. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
    this.#failAll(new Error("PNG workers closed"));
  }

  #run(worker: number, job: StripeJob): Promise<StripeResult> {
    return new Promise((resolve, reject) => {
      this.#pending.set(job.id, { resolve, reject });
      this.#workers[worker].postMessage(job, [job.rgb.buffer as ArrayBuffer]);
    });
  }

  #failAll(error: Error): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

/** The 2-byte zlib header for a deflate stream at `level` (RFC 1950: CM 8, 32K window, FLEVEL). */
function zlibHeader(level: number): Uint8Array {
  const flevel = level <= 1 ? 0 : level <= 5 ? 1 : level === 6 ? 2 : 3;
  const cmf = 0x78, flg = flevel << 6;
  return Uint8Array.of(cmf, flg + (31 - ((cmf * 256 + flg) % 31)) % 31);
}

/** A PNG chunk: length, type, data, CRC-32 of type and data (given when already computed). */
function chunk(type: string, data: Uint8Array, crc?: number): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc ?? zlib.crc32(out.subarray(4, 8 + data.length)));
  return out;
}
