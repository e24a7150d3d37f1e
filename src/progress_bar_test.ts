import assert from "node:assert/strict";
import { DownloadProgressBar, formatBytes, formatProgress } from "./progress_bar.ts";

const progress = (bytes: number, filesDone = 0) => ({
  file: "transformer/model.onnx_data",
  bytes,
  totalBytes: 2_000_000_000,
  filesDone,
  fileCount: 11,
});

Deno.test("formatBytes uses the hub's decimal units", () => {
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(134_000), "134.0 kB");
  assert.equal(formatBytes(40_900_000_000), "40.9 GB");
});

Deno.test("formatProgress shows bar, percentage, bytes, rate, time left and file", () => {
  assert.equal(
    formatProgress("Qwen/Qwen-Image", progress(500_000_000, 4), 50_000_000),
    "Qwen/Qwen-Image [######------------------]  25% 500.0 MB/2.0 GB 50.0 MB/s eta 30s  " +
      "transformer/model.onnx_data (4/11)",
  );
});

Deno.test("the bar writes one line per 10 % to a log and redraws in place on a terminal", () => {
  const sink = (terminal: boolean) => {
    const chunks: string[] = [];
    return {
      chunks,
      writeSync: (b: Uint8Array) => (chunks.push(new TextDecoder().decode(b)), b.length),
      isTerminal: () => terminal,
    };
  };
  const log = sink(false);
  const bar = new DownloadProgressBar("m", log);
  for (let b = 0; b <= 2_000_000_000; b += 50_000_000) bar.update(progress(b));
  bar.finish();
  assert.equal(log.chunks.length, 11); // 0 %, 10 % … 90 %, then the final line
  assert.ok(log.chunks.every((c) => c.endsWith("\n") && !c.includes("\r")));
  assert.match(log.chunks.at(-1)!, /100% 2\.0 GB\/2\.0 GB/);

  const tty = sink(true);
  const live = new DownloadProgressBar("m", tty);
  for (let b = 0; b <= 2_000_000_000; b += 50_000_000) live.update(progress(b));
  live.finish();
  assert.equal(tty.chunks.length, 2); // the first draw, then none within 100 ms, then the final
  assert.ok(tty.chunks.every((c) => c.startsWith("\r\x1b[2K")));
});
