/**
 * A file appended to from a worker thread, so that the converter's thread goes on to the next
 * tensor while the last one is written: `append` copies the bytes into one of two shared slots
 * (waiting while both are still being written), packing appends together, and the worker writes
 * each full slot out. Writing was half of a conversion's time on its own thread
 * (docs/benchmarks.md, "Converter").
 *
 * @module
 */

/** Bytes per slot; a larger append is copied over in pieces. */
const SLOT_BYTES = 64 * 2 ** 20;
const SLOTS = 2;
/** A slot's state: free to fill. */
export const FREE = 0;
/** A slot's state: filled, the worker writes it. */
const FULL = 1;
/** The worker's state: open; closed the file; failed (its message in the error buffer). */
const RUNNING = 0;
/** The worker closed the file. */
export const CLOSED = 1;
/** The worker failed; its message is in the error buffer. */
export const FAILED = 2;
/** Longest wait for the worker before it is taken to be gone. */
const WAIT_MS = 600_000;

/** A file in `path` (created, or truncated) appended to by a worker thread. */
export class WriteBehindFile {
  readonly #worker: Worker;
  readonly #slots = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  /** Each slot's state, then the worker's. */
  readonly #state = new Int32Array(new SharedArrayBuffer(4 * (SLOTS + 1)));
  readonly #error = new SharedArrayBuffer(4096);
  /** The slot being filled, and how many bytes it holds. */
  #next = 0;
  #filled = 0;
  #closed = false;

  constructor(readonly path: string) {
    this.#worker = new Worker(new URL("./write_behind_worker.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.postMessage({
      path,
      slots: this.#slots,
      state: this.#state.buffer,
      error: this.#error,
      slotBytes: SLOT_BYTES,
    });
  }

  /**
   * Copies `bytes` into the slot being filled, handing each full slot to the worker: appends are
   * packed, so that a small tensor costs neither a slot nor a wait of its own.
   */
  append(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length;) {
      // A slot is waited for when its filling starts: it may still be being written.
      if (this.#filled === 0) this.#wait(this.#next, FULL);
      const n = Math.min(bytes.length - at, SLOT_BYTES - this.#filled);
      new Uint8Array(this.#slots, this.#next * SLOT_BYTES + this.#filled, n)
        .set(bytes.subarray(at, at + n));
      this.#filled += n;
      at += n;
      if (this.#filled === SLOT_BYTES) this.#handOver();
    }
  }

  /** Waits for every write, closes the file and ends the worker; throws the worker's error. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#filled > 0) this.#handOver();
      this.#worker.postMessage({ close: true });
      this.#wait(SLOTS, RUNNING);
    } finally {
      this.#worker.terminate();
    }
  }

  /** Hands the slot being filled to the worker; the next one is filled from its start. */
  #handOver(): void {
    const slot = this.#next;
    Atomics.store(this.#state, slot, FULL);
    this.#worker.postMessage({ slot, length: this.#filled });
    this.#next = (slot + 1) % SLOTS;
    this.#filled = 0;
  }

  /** Blocks while `state[index]` is `busy`; throws when the worker failed or stopped answering. */
  #wait(index: number, busy: number): void {
    const started = performance.now();
    while (Atomics.load(this.#state, index) === busy) {
      this.#failed();
      if (performance.now() - started > WAIT_MS) {
        throw new Error(`writing ${this.path}: no progress in ${WAIT_MS / 1000} s`);
      }
      Atomics.wait(this.#state, index, busy, 1000);
    }
    this.#failed();
  }

  #failed(): void {
    if (Atomics.load(this.#state, SLOTS) !== FAILED) return;
    const bytes = new Uint8Array(this.#error);
    const end = bytes.indexOf(0);
    throw new Error(new TextDecoder().decode(bytes.slice(0, end < 0 ? bytes.length : end)));
  }
}
