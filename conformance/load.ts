/**
 * `deno task load --base-url URL [--clients 16] [--seconds 30] [--body JSON]`: N clients send
 * requests back to back for T seconds (a valid small generation by default) against any server.
 * Prints status counts, requests/s, p50/p99 latency, and the server's resident memory over time
 * (from its `/metrics` `process_resident_memory_bytes`, when it has one): before, peak, and 5 s
 * after the load, the figure that says whether memory is given back.
 *
 * @module
 */
import { parseFlags } from "./args.ts";

/** What a load run measured. */
export interface LoadReport {
  requests: number;
  seconds: number;
  statuses: Record<number, number>;
  p50Ms: number;
  p99Ms: number;
  /** Resident memory samples in bytes (every 500 ms), with the phase they were taken in. */
  rss: { phase: "before" | "load" | "after"; bytes: number }[];
}

async function rss(baseUrl: string, headers: HeadersInit): Promise<number | undefined> {
  try {
    const text = await (await fetch(`${baseUrl}/metrics`, { headers })).text();
    const line = text.split("\n").find((l) => l.startsWith("process_resident_memory_bytes "));
    return line ? Number(line.split(" ")[1]) : undefined;
  } catch {
    return undefined;
  }
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};

/** Runs `clients` loops for `seconds` against `baseUrl`. */
export async function load(
  baseUrl: string,
  options: { clients: number; seconds: number; body: unknown; apiKey?: string; settleS?: number },
): Promise<LoadReport> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const report: LoadReport = { requests: 0, seconds: 0, statuses: {}, p50Ms: 0, p99Ms: 0, rss: [] };
  const sample = async (phase: LoadReport["rss"][number]["phase"]) => {
    const bytes = await rss(baseUrl, headers);
    if (bytes !== undefined) report.rss.push({ phase, bytes });
  };
  await sample("before");
  let running = true;
  const sampler = (async () => {
    while (running) {
      await new Promise((r) => setTimeout(r, 500));
      if (running) await sample("load");
    }
  })();
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + options.seconds * 1000;
  await Promise.all(Array.from({ length: options.clients }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      let status = 0;
      try {
        const res = await fetch(`${baseUrl}/v1/images/generations`, {
          method: "POST",
          headers,
          body: JSON.stringify(options.body),
        });
        status = res.status;
        await res.arrayBuffer();
      } catch {
        status = 0;
      }
      latencies.push(performance.now() - t);
      report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      report.requests++;
      if (status === 429) await new Promise((r) => setTimeout(r, 100));
    }
  }));
  report.seconds = (performance.now() - started) / 1000;
  running = false;
  await sampler;
  for (let i = 0; i < (options.settleS ?? 5) * 2; i++) {
    await new Promise((r) => setTimeout(r, 500));
    await sample("after");
  }
  report.p50Ms = quantile(latencies, 0.5);
  report.p99Ms = quantile(latencies, 0.99);
  return report;
}

if (import.meta.main) {
  const values = parseFlags(
    {
      "base-url": { type: "string", default: "http://127.0.0.1:8000" },
      clients: { type: "string", default: "16" },
      seconds: { type: "string", default: "30" },
      body: { type: "string", default: '{"prompt":"a red circle on a blue background"}' },
      "api-key": { type: "string" },
    },
    "Usage: deno task load --base-url URL [--clients N] [--seconds S] [--body JSON] [--api-key KEY]",
  );
  const r = await load(values["base-url"].replace(/\/+$/, ""), {
    clients: Number(values.clients),
    seconds: Number(values.seconds),
    body: JSON.parse(values.body),
    apiKey: values["api-key"],
  });
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  console.log(
    `load: ${values.clients} clients × ${values.seconds} s against ${
      values["base-url"]
    }: ${r.requests} requests, ${(r.requests / r.seconds).toFixed(1)}/s, p50 ${
      r.p50Ms.toFixed(0)
    } ms, p99 ${r.p99Ms.toFixed(0)} ms`,
  );
  console.log(
    `statuses: ${Object.entries(r.statuses).map(([s, n]) => `${s}×${n}`).join(", ")}`,
  );
  const of = (phase: string) => r.rss.filter((s) => s.phase === phase).map((s) => s.bytes);
  if (r.rss.length) {
    console.log(
      `resident memory: before ${mb(of("before")[0])}, peak ${
        mb(Math.max(...of("load")))
      }, 5 s after ${mb(of("after").at(-1)!)}`,
    );
  }
}
