/**
 * The statistics the `deno task bench` scripts share.
 *
 * @module
 */

/** The median (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** This process's peak resident set (`VmHWM`, Linux), in MiB. */
export async function peakRssMib(): Promise<number> {
  const status = await Deno.readTextFile("/proc/self/status");
  return Number(status.match(/VmHWM:\s+(\d+) kB/)![1]) / 1024;
}

/**
 * This process's resident set now (Linux), in MiB: anonymous pages (the heap, ONNX Runtime's
 * copies and repacked weights, activations) and file pages (the executable, libraries, and the
 * memory-mapped weight file's pages read so far, which Linux may drop under pressure).
 */
export async function rssMib(): Promise<{ anon: number; file: number }> {
  const status = await Deno.readTextFile("/proc/self/status");
  const kib = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+) kB`))![1]);
  return { anon: kib("RssAnon") / 1024, file: kib("RssFile") / 1024 };
}
