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
