/**
 * Giving freed memory back to the system after a batch. With ONNX Runtime's arena off its buffers
 * are malloc'd and freed, but glibc keeps freed pages of its heaps until `malloc_trim` asks it to
 * return them; without that the process stays near its peak after a burst of large requests.
 *
 * @module
 */

type Trim = () => void;

let trim: Trim | undefined;

/** Calls glibc's `malloc_trim(0)`; does nothing where there is no glibc (musl, macOS, Windows). */
export function trimHeap(): void {
  trim ??= openTrim();
  trim();
}

function openTrim(): Trim {
  if (Deno.build.os !== "linux") return () => {};
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => void libc.symbols.malloc_trim(0n);
  } catch {
    return () => {};
  }
}

/** {@linkcode idleCleanup}'s handle. */
export interface IdleCleanup {
  /** (Re)starts the idle countdown: call after each piece of work. */
  schedule(): void;
  /** Stops a pending cleanup: call when work arrives. */
  cancel(): void;
}

/**
 * Gives a thread's freed memory back once it has been idle for `afterMs`: its JavaScript garbage
 * (collected when the process runs with `--v8-flags=--expose-gc`, as `deno task serve` does), then
 * glibc's freed pages ({@linkcode trimHeap}, process-wide). It takes milliseconds, so work that
 * arrives first cancels it rather than waiting behind it; `busy` can veto it as well.
 */
export function idleCleanup(afterMs: number, busy: () => boolean = () => false): IdleCleanup {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  return {
    cancel,
    schedule() {
      cancel();
      timer = setTimeout(() => {
        timer = undefined;
        if (busy()) return;
        (globalThis as { gc?: () => void }).gc?.();
        trimHeap();
      }, afterMs);
    },
  };
}
