/**
 * A one-reader async queue: callbacks push, a `for await` loop reads, and a failure ends the
 * loop by throwing. Bridges engine callbacks (steps, previews) to a response stream.
 *
 * @module
 */

/** One server-sent event: `event` is omitted for data-only streams (chat). */
export interface SseEvent {
  event?: string;
  data: string;
}

/** Values pushed by producers, read in order by one consumer. */
export class EventChannel<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #ended = false;
  #error?: unknown;
  #wake?: () => void;

  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake?.();
  }

  /** Ends the stream after what was pushed. */
  close(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** Ends the stream: the reader gets what was pushed, then `error` is thrown. */
  fail(error: unknown): void {
    this.#error = error;
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
