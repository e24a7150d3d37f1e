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

type Gc = (options?: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/**
 * A full JavaScript collection, when the process runs with `--v8-flags=--expose-gc` (as `deno task
 * serve` does); else nothing. A plain one keeps the emptied heap pages for reuse (a thread that
 * had 200 MiB of garbage stayed at 207 MiB after it), in 6–18 ms; `releasePages` also gives them
 * back to the system (37 MiB), but takes 40–260 ms on a busy 2-core machine.
 */
export function collectGarbage(releasePages = false): void {
  const gc = (globalThis as { gc?: Gc }).gc;
  if (releasePages) gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
  else gc?.();
}

/** {@linkcode idleCleanup}'s handle. */
export interface IdleCleanup {
  /** (Re)starts the idle countdown: call after each piece of work. */
  schedule(): void;
  /** Stops a pending cleanup: call when work arrives. */
  cancel(): void;
}

/** After this long idle, the cleanup's second pass also releases the JavaScript heap's pages. */
const RELEASE_AFTER_MS = 2000;

/**
 * Gives a thread's freed memory back once it has been idle, in two passes: after `afterMs`, its
 * JavaScript garbage ({@linkcode collectGarbage}) and glibc's freed pages ({@linkcode trimHeap},
 * process-wide); after {@linkcode RELEASE_AFTER_MS} the same with the JavaScript heap's emptied
 * pages released too, which costs more and so waits for a thread that is really idle. Work that
 * arrives first cancels what is pending rather than waiting behind it; `busy` can veto a pass.
 */
export function idleCleanup(afterMs: number, busy: () => boolean = () => false): IdleCleanup {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cancel = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const pass = (delay: number, releasePages: boolean) => {
    timer = setTimeout(() => {
      timer = undefined;
      if (busy()) return;
      collectGarbage(releasePages);
      trimHeap();
      if (!releasePages) pass(RELEASE_AFTER_MS - afterMs, true);
    }, delay);
  };
  return {
    cancel,
    schedule() {
      cancel();
      pass(afterMs, false);
    },
  };
}
