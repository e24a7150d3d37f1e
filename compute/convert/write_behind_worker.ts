/**
 * The worker of `write_behind.ts`: opens the file, writes each slot it is told of in order and
 * frees it, and on `close` closes the file; a failure is stored as text for the converter's thread.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { CLOSED, FAILED, FREE } from "./write_behind.ts";

let file: Deno.FsFile | undefined;
let slots: SharedArrayBuffer, state: Int32Array, error: SharedArrayBuffer, slotBytes: number;
/**
 * Set by the first failure: later messages are ignored, so that neither the next write's error
 * nor `close` replaces what the converter's thread is to read (it may not have looked yet).
 */
let failed = false;
/**
 * Bytes per `write` call. Deno copies a shared buffer it is given into a fresh allocation of the
 * same size: a whole 64 MiB slot at a time that was page faults, and wrote 0.7–1.3 GB/s against
 * 3 GB/s in 4 MiB pieces (whose allocation is reused).
 */
const PIECE_BYTES = 4 * 2 ** 20;

self.onmessage = (event: MessageEvent) => {
  const m = event.data;
  if (failed) return;
  try {
    if (m.path !== undefined) {
      ({ slots, error, slotBytes } = m);
      state = new Int32Array(m.state);
      file = Deno.openSync(m.path, { write: true, create: true, truncate: true });
    } else if (m.close) {
      file?.close();
      file = undefined;
      Atomics.store(state, state.length - 1, CLOSED);
      Atomics.notify(state, state.length - 1);
    } else {
      const bytes = new Uint8Array(slots, m.slot * slotBytes, m.length);
      for (let at = 0; at < bytes.length;) {
        at += file!.writeSync(bytes.subarray(at, at + PIECE_BYTES));
      }
      Atomics.store(state, m.slot, FREE);
      Atomics.notify(state, m.slot);
    }
  } catch (e) {
    failed = true;
    const text = new TextEncoder().encode((e as Error).message).subarray(0, error.byteLength - 1);
    new Uint8Array(error).set(text);
    Atomics.store(state, state.length - 1, FAILED);
    Atomics.notify(state, state.length - 1);
    for (let i = 0; i < state.length - 1; i++) Atomics.notify(state, i);
  }
};
