/**
 * Worker of {@linkcode PngWorkers}: deflates one horizontal stripe of an RGB image as PNG scanlines
 * (filter byte 0, then the row), ending on a byte boundary with a sync flush unless it is the last
 * stripe, so that the stripes' outputs concatenate into one deflate stream. Returns the stripe's
 * Adler-32 and the CRC of its `IDAT` chunk as well.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import zlib from "node:zlib";
import type { StripeJob, StripeResult } from "./png_workers.ts";
import { adler32 } from "./png_workers.ts";
import { idleCleanup } from "../backends/heap.ts";

const IDAT = zlib.crc32(new TextEncoder().encode("IDAT"));

/**
 * A burst of large images leaves their buffers here as garbage, which V8 may keep for long without
 * pressure: collected (and the heap trimmed) once this worker has been idle for 250 ms.
 */
const cleanup = idleCleanup(250);

self.onmessage = ({ data: job }: MessageEvent<StripeJob>) => {
  cleanup.cancel();
  const rowBytes = job.width * 3;
  const rows = job.rgb.length / rowBytes;
  const scanlines = new Uint8Array(rows * (rowBytes + 1));
  for (let r = 0; r < rows; r++) {
    scanlines.set(job.rgb.subarray(r * rowBytes, (r + 1) * rowBytes), r * (rowBytes + 1) + 1);
  }
  const { Z_FINISH, Z_SYNC_FLUSH } = zlib.constants;
  const out = zlib.deflateRawSync(scanlines, {
    level: job.level,
    finishFlush: job.last ? Z_FINISH : Z_SYNC_FLUSH,
  });
  // A copy of its own: zlib's Buffer may be a view into a larger pool, unfit for transfer.
  const deflated = new Uint8Array(out.byteLength);
  deflated.set(out);
  const result: StripeResult = {
    id: job.id,
    deflated,
    crc: zlib.crc32(deflated, IDAT),
    adler: adler32(scanlines),
    length: scanlines.length,
  };
  self.postMessage(result, [deflated.buffer]);
  cleanup.schedule();
};
