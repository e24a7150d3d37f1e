/**
 * The download progress bar on stderr: redrawn in place on a terminal, and one line per 10 % when
 * stderr is a log file or a container's log stream, where `\r` redraws would pile up.
 *
 * @module
 */
import type { DownloadProgress } from "../compute/mod.ts";

/** `1234567` → `"1.2 MB"` (decimal units, as the hub shows sizes). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** One line of progress: bar, percentage, bytes, rate, time left, current file. */
export function formatProgress(label: string, p: DownloadProgress, rate: number): string {
  const fraction = p.totalBytes > 0 ? Math.min(1, p.bytes / p.totalBytes) : 1;
  const width = 24;
  const filled = Math.round(fraction * width);
  const eta = rate > 0 && fraction < 1 ? ` eta ${Math.ceil((p.totalBytes - p.bytes) / rate)}s` : "";
  return `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ` +
    `${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(p.bytes)}/${
      formatBytes(p.totalBytes)
    } ${formatBytes(rate)}/s${eta}  ${p.file} (${p.filesDone}/${p.fileCount})`;
}

/** Draws {@linkcode DownloadProgress} updates to a stream, at most ten times a second. */
export class DownloadProgressBar {
  #start = performance.now();
  /** Bytes already on disk at the first update (a resumed download), left out of the rate. */
  #baseline?: number;
  #lastDraw = -Infinity;
  #lastTenth = -1;
  #last?: DownloadProgress;
  readonly #encoder = new TextEncoder();

  constructor(
    readonly label: string,
    readonly out: { writeSync(p: Uint8Array): number; isTerminal(): boolean } = Deno.stderr,
  ) {}

  /** Records progress; draws when due. */
  update(p: DownloadProgress): void {
    this.#last = p;
    this.#baseline ??= p.bytes;
    const now = performance.now();
    if (this.out.isTerminal()) {
      if (now - this.#lastDraw < 100) return;
      this.#lastDraw = now;
      this.#write(`\r\x1b[2K${this.#line(p)}`);
    } else {
      const tenth = Math.floor((p.bytes / Math.max(1, p.totalBytes)) * 10);
      // 100 % is left to finish(), which also counts the last file as done.
      if (tenth <= this.#lastTenth || tenth >= 10) return;
      this.#lastTenth = tenth;
      this.#write(`${this.#line(p)}\n`);
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (!this.#last) return;
    const clear = this.out.isTerminal() ? "\r\x1b[2K" : "";
    this.#write(`${clear}${this.#line(this.#last)}\n`);
  }

  #line(p: DownloadProgress): string {
    const elapsedS = (performance.now() - this.#start) / 1000;
    return formatProgress(this.label, p, elapsedS > 0 ? (p.bytes - this.#baseline!) / elapsedS : 0);
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    for (let written = 0; written < bytes.length;) {
      written += this.out.writeSync(bytes.subarray(written));
    }
  }
}
