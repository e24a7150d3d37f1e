/**
 * `deno task bench:serving [--seconds 8] [--model PATH]` (also the last part of `deno task
 * bench`): the serving engine measured through the real server over HTTP.
 *
 * 1. Time from start to healthy with the embedded model (`deno task serve`, process spawn to the
 *    first 200 from `/health`), the median of 3.
 * 2. `/health` latency while one long generation runs (sd15-tiny, 1024², 200 steps).
 * 3. Throughput and latency of 1 vs 8 concurrent clients on the embedded model, with dynamic
 *    batching and with it off (`--max-batch-size 1`), all in one run.
 * 4. Memory: the server's RSS (`VmRSS`) after warm-up, then each second for 10 s after a burst
 *    of three 1024² n = 4 requests, then after one more small request (sd15-tiny); and the peak
 *    RSS (`VmHWM`) of a fresh server through one 1024² n = 10 request (sd15-tiny and embedded).
 * 5. Cancellation: the time from a client's close to the server's access-log line for its
 *    request, and that line's status, for a close during denoising (sd15-tiny; in steps of that
 *    request) and during the VAE decode of a 1024² n = 10 request (streamed and not; sd15-tiny
 *    and embedded).
 *
 * `--only memory,cancel` runs some sections (of `health`, `start`, `batching`, `memory`, `cancel`).
 * Prints markdown.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startServer, type TestServer } from "./test_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "8" },
    model: { type: "string" },
    only: { type: "string" },
  },
});
const SECONDS = Number(values.seconds);
const SD15 = new URL("../fixtures/models/sd15-tiny", import.meta.url).pathname;
/** The models of the n = 10 rows: sd15-tiny, and the embedded one, whose decoder is heavier. */
const MODELS: [string, string[]][] = [["sd15-tiny", ["--model", SD15]], ["embedded", []]];

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const post = (server: TestServer, body: unknown, id?: string, signal?: AbortSignal) =>
  fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json", ...id && { "x-request-id": id } },
    body: JSON.stringify(body),
    signal,
  });

async function healthDuringLongGeneration(): Promise<void> {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    let done = false;
    const started = performance.now();
    const generation = post(server, { prompt: "x", size: "1024x1024", num_inference_steps: 200 })
      .then(async (r) => {
        await r.body?.cancel();
        done = true;
      });
    const latencies: number[] = [];
    while (!done) {
      const t = performance.now();
      const res = await fetch(`${server.url}/health`);
      await res.body?.cancel();
      latencies.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
    await generation;
    const total = (performance.now() - started) / 1000;
    console.log(`\n### /health while one generation runs (sd15-tiny, 1024², 200 steps, cpu)\n`);
    console.log(`| generation | probes | p50 | p99 | max |\n| --- | --- | --- | --- | --- |`);
    console.log(
      `| ${total.toFixed(1)} s | ${latencies.length} | ${
        quantile(latencies, 0.5).toFixed(1)
      } ms | ${quantile(latencies, 0.99).toFixed(1)} ms | ${
        Math.max(...latencies).toFixed(1)
      } ms |`,
    );
  } finally {
    await server.stop();
  }
}

/** `clients` loops, each sending the next request when its last one is answered. */
async function load(server: TestServer, clients: number, body: Record<string, unknown>) {
  const latencies: number[] = [];
  let images = 0, seed = 0;
  const end = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const res = await post(server, { ...body, seed: seed++ });
      const json = await res.json();
      if (res.status !== 200) throw new Error(JSON.stringify(json));
      latencies.push(performance.now() - t);
      images += json.data.length;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  return { rate: images / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
}

async function batching(): Promise<void> {
  const model = values.model ? ["--model", values.model] : [];
  const body = { prompt: "a red circle on a blue background" };
  console.log(
    `\n### 1 vs 8 clients, ${
      values.model ?? "embedded model"
    }, cpu, default size and steps, ${SECONDS} s each\n`,
  );
  console.log(`| batching | clients | images/s | p50 | p99 | vs 1 client |`);
  console.log(`| --- | --- | --- | --- | --- | --- |`);
  for (const maxBatch of ["8", "1"]) {
    const server = await startServer([...model, "--device", "cpu", "--max-batch-size", maxBatch]);
    try {
      await load(server, 1, body); // warm-up
      const one = await load(server, 1, body);
      const eight = await load(server, 8, body);
      const label = maxBatch === "1" ? "off (--max-batch-size 1)" : "on (--max-batch-size 8)";
      for (const [clients, r] of [[1, one], [8, eight]] as const) {
        console.log(
          `| ${label} | ${clients} | ${r.rate.toFixed(1)} | ${r.p50.toFixed(0)} ms | ${
            r.p99.toFixed(0)
          } ms | ${(r.rate / one.rate).toFixed(2)}× |`,
        );
      }
    } finally {
      await server.stop();
    }
  }
  console.log(
    "\nOn a realistic-width network a denoiser call is compute-bound: SD-1.5's UNet runs at 0.98 of" +
      " the CPU's GEMM peak with batch 2 already (`deno task bench:realistic`), so larger batches" +
      " have at most ~2 % to win there on CPU.",
  );
}

async function timeToHealthy(): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const server = await startServer(["--device", "cpu"]);
    times.push(performance.now() - started);
    await server.stop();
  }
  console.log(`\n### Start to healthy, embedded model, cpu (spawn → first 200 from /health)\n`);
  console.log(`| runs | median | min | max |\n| --- | --- | --- | --- |`);
  console.log(
    `| 3 | ${quantile(times, 0.5).toFixed(0)} ms | ${Math.min(...times).toFixed(0)} ms | ${
      Math.max(...times).toFixed(0)
    } ms |`,
  );
}

/**
 * The server process's RSS (`VmRSS`, what `/metrics` reports) or its peak so far (`VmHWM`), in
 * MiB. Read from `/proc`, not `/metrics`: a request would itself end the server's idle time.
 */
async function rss(server: TestServer, field: "VmRSS" | "VmHWM" = "VmRSS"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${server.pid}/status`);
  return Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))![1]) / 1024;
}

/** Server RSS through and after a burst, against its baseline. */
async function burstMemory(): Promise<void> {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    const generate = (body: Record<string, unknown>) =>
      post(server, { prompt: "a red circle", ...body }).then((r) => r.arrayBuffer());
    for (let i = 0; i < 3; i++) await generate({ seed: i, size: "256x256" });
    // Past the idle cleanup's second pass, so that the baseline is as clean as what it is held to.
    await pause(3000);
    const baseline = await rss(server);
    const burst = performance.now();
    for (let i = 0; i < 3; i++) {
      await generate({ size: "1024x1024", n: 4, num_inference_steps: 2 });
    }
    const burstS = (performance.now() - burst) / 1000;
    const samples = [await rss(server)];
    const ended = performance.now();
    for (let s = 1; s <= 10; s++) {
      await pause(ended + s * 1000 - performance.now());
      samples.push(await rss(server));
    }
    await generate({ seed: 9, size: "256x256" });
    await pause(1000);
    const next = await rss(server);
    const within = samples.findIndex((v) => v <= 1.2 * baseline);
    console.log(
      `\n### Server RSS after a burst (three 1024² n = 4 requests, 2 steps, ${
        burstS.toFixed(1)
      } s), sd15-tiny, cpu\n`,
    );
    console.log(
      `Baseline 3 s after warm-up (three 256² requests): ${baseline.toFixed(0)} MiB.\n`,
    );
    const seconds = samples.map((_, s) => `${s} s`);
    console.log(`| ${seconds.join(" | ")} | after one more small request |`);
    console.log(`| ${[...seconds, ""].map(() => "---").join(" | ")} |`);
    console.log(
      `| ${[...samples, next].map((v) => `${(v / baseline).toFixed(2)}×`).join(" | ")} |`,
    );
    console.log(
      `\nWithin 1.2× of the baseline ${within < 0 ? "not within 10 s" : `after ${within} s`}.`,
    );
  } finally {
    await server.stop();
  }
}

/** Peak RSS of one large request, per model, each in a fresh process (VmHWM never goes down). */
async function peakMemory(): Promise<void> {
  console.log(`\n### Peak RSS of one 1024² n = 10 request (2 steps), cpu\n`);
  console.log(`| model | peak before | peak through the request | request | decode |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  for (const [label, model] of MODELS) {
    // A fresh process per model: VmHWM never goes down.
    const fresh = await startServer([...model, "--device", "cpu"]);
    try {
      await post(fresh, { prompt: "warm", size: "256x256" }).then((r) => r.arrayBuffer());
      const before = await rss(fresh, "VmHWM");
      const t = performance.now();
      const res = await post(
        fresh,
        { prompt: "ten", size: "1024x1024", n: 10, num_inference_steps: 2 },
        "ten-images",
      );
      await res.arrayBuffer();
      const seconds = (performance.now() - t) / 1000;
      const after = await rss(fresh, "VmHWM");
      const decode = fresh.output().match(/id=ten-images .*decode_ms=(\d+)/)?.[1];
      console.log(
        `| ${label} | ${before.toFixed(0)} MiB | ${(after / 1024).toFixed(2)} GiB | ${
          seconds.toFixed(1)
        } s | ${decode} ms |`,
      );
    } finally {
      await fresh.stop();
    }
  }
}

/** The status of the access-log line of request `id`, and when it appeared. */
async function logLine(server: TestServer, id: string): Promise<{ status: number; at: number }> {
  const pattern = new RegExp(`POST /v1/images/generations (\\d+) id=${id}\\b`);
  const deadline = performance.now() + 120_000;
  for (;;) {
    const m = server.output().match(pattern);
    if (m) return { status: Number(m[1]), at: performance.now() };
    if (performance.now() > deadline) throw new Error(`no log line for ${id}:\n${server.output()}`);
    await pause(2);
  }
}

/**
 * Streams a request with progress events until `stop(step, elapsedMs)` says so; returns the
 * step times the client saw and when it stopped reading. The caller closes the connection.
 */
async function streamUntil(
  server: TestServer,
  body: Record<string, unknown>,
  id: string,
  controller: AbortController,
  stop: (step: number, total: number) => boolean,
): Promise<{ elapsed: number[] }> {
  const res = await post(
    server,
    { ...body, stream: true, stream_options: { include_progress: true } },
    id,
    controller.signal,
  );
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const elapsed: number[] = [];
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${id}: the stream ended before the close`);
    buffered += value;
    for (let end = buffered.indexOf("\n\n"); end >= 0; end = buffered.indexOf("\n\n")) {
      const data = buffered.slice(0, end).split("\n").find((l) => l.startsWith("data: "));
      buffered = buffered.slice(end + 2);
      const event = data && JSON.parse(data.slice(6));
      if (event?.type !== "image_generation.progress") continue;
      elapsed.push(event.elapsed_ms);
      if (stop(event.step, event.total)) return { elapsed };
    }
  }
}

async function cancellation(): Promise<void> {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    console.log(`\n### Client close to stop, cpu\n`);
    console.log(
      "Time from the client's close to the server's access-log line for the request, and its status.\n",
    );
    console.log(`| close during | close → log line | in steps | status |`);
    console.log(`| --- | --- | --- | --- |`);
    const long = { prompt: "slow", size: "1024x1024", num_inference_steps: 200 };
    for (let trial = 0; trial < 5; trial++) {
      const id = `denoise-${trial}`;
      const controller = new AbortController();
      const { elapsed } = await streamUntil(server, long, id, controller, (s) => s >= 20 + trial);
      const stepMs = (elapsed.at(-1)! - elapsed.at(-11)!) / 10;
      const closed = performance.now();
      controller.abort();
      const { status, at } = await logLine(server, id);
      console.log(
        `| denoising (sd15-tiny, 1024², 200 steps, step ${elapsed.length}; ${
          stepMs.toFixed(0)
        } ms/step) | ${(at - closed).toFixed(0)} ms | ${
          ((at - closed) / stepMs).toFixed(1)
        } | ${status} |`,
      );
    }
  } finally {
    await server.stop();
  }
  for (const [label, model] of MODELS) await closeDuringDecode(label, model);
}

/**
 * A close 300 ms into the decode of ten 1024² images: streamed (the end of the last step is seen),
 * then not streamed, closed as long after sending as the streamed one was.
 */
async function closeDuringDecode(label: string, model: string[]): Promise<void> {
  const server = await startServer([...model, "--device", "cpu"]);
  try {
    const ten = { prompt: "ten", size: "1024x1024", n: 10, num_inference_steps: 2 };
    const controller = new AbortController();
    const sent = performance.now();
    await streamUntil(server, ten, "decode-stream", controller, (s, total) => s === total);
    await pause(300);
    const offset = performance.now() - sent;
    let closed = performance.now();
    controller.abort();
    let line = await logLine(server, "decode-stream");
    console.log(
      `| the VAE decode (${label}, 1024², n = 10, 2 steps; streamed) | ${
        (line.at - closed).toFixed(0)
      } ms | | ${line.status} |`,
    );
    const plain = new AbortController();
    const request = post(server, ten, "decode-plain", plain.signal).catch(() => {});
    await pause(offset);
    closed = performance.now();
    plain.abort();
    line = await logLine(server, "decode-plain");
    await request;
    console.log(
      `| the VAE decode (${label}, 1024², n = 10, 2 steps; not streamed, closed ${
        offset.toFixed(0)
      } ms after sending) | ${(line.at - closed).toFixed(0)} ms | | ${line.status} |`,
    );
  } finally {
    await server.stop();
  }
}

console.log(`## Serving engine (\`deno task bench:serving --seconds ${SECONDS}\`)`);
const SECTIONS: Record<string, () => Promise<void>> = {
  start: timeToHealthy,
  health: healthDuringLongGeneration,
  batching,
  memory: async () => {
    await burstMemory();
    await peakMemory();
  },
  cancel: cancellation,
};
const only = values.only?.split(",");
for (const [name, run] of Object.entries(SECTIONS)) if (!only || only.includes(name)) await run();
