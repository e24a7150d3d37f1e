/**
 * `deno task drain:check [N]`: starts the server N times (default 20) and SIGTERMs it, alternately
 * while the embedded model loads (0–1,000 ms after the server listens) and while three requests
 * run on the sd15-tiny fixture; checks that every request is answered 200 and every process exits
 * 0 (a crash at exit shows as 139, SIGSEGV, or 134, glibc's abort on a corrupted heap). Prints one
 * line per run and a summary; exits 1 if any run went wrong.
 *
 * @module
 */
import { startServer } from "../src/test_server.ts";

const SD15 = new URL("../fixtures/models/sd15-tiny", import.meta.url).pathname;

/**
 * One start of the embedded model and SIGTERM `delayMs` after the server listens, while the model
 * loads (its sessions are created in the second after that, here).
 */
export async function drainWhileLoading(delayMs: number): Promise<
  { statuses: number[]; code: number; signal: string }
> {
  const server = await startServer(["--device", "cpu"], { waitReady: false });
  await new Promise((r) => setTimeout(r, delayMs));
  server.kill("SIGTERM");
  const status = await server.exited;
  await server.stop();
  return { statuses: [], code: status.code, signal: status.signal ?? "" };
}

/** One start, three requests, SIGTERM while they run: the answers' statuses and the exit status. */
export async function drainWhileRunning(): Promise<
  { statuses: number[]; code: number; signal: string }
> {
  const server = await startServer(["--model", SD15, "--device", "cpu", "--max-batch-size", "1"]);
  const requests = Array.from(
    { length: 3 },
    (_, i) =>
      fetch(`${server.url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: `p${i}`, size: "256x256", num_inference_steps: 4 }),
      }).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }, () => 0),
  );
  // SIGTERM once the first request runs, so that the drain overlaps inference and encoding.
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    if (/^vllm:num_requests_running\S* [1-9]/m.test(metrics)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  server.kill("SIGTERM");
  const statuses = await Promise.all(requests);
  const status = await server.exited;
  await server.stop();
  return { statuses, code: status.code, signal: status.signal ?? "" };
}

if (import.meta.main) {
  const runs = Number(Deno.args[0] ?? 20);
  const codes: number[] = [];
  let bad = 0;
  for (let i = 1; i <= runs; i++) {
    const t = performance.now();
    const loading = i % 2 === 1;
    const { statuses, code, signal } = loading
      ? await drainWhileLoading((i * 97) % 1000)
      : await drainWhileRunning();
    codes.push(code);
    const ok = code === 0 && statuses.every((s) => s === 200);
    if (!ok) bad++;
    console.log(
      `drain ${i}/${runs} (${loading ? "while loading" : "3 requests running"}): exit ${code}${
        signal ? ` (${signal})` : ""
      }${statuses.length ? `, answers ${statuses.join(",")}` : ""}, ${
        Math.round(performance.now() - t)
      } ms${ok ? "" : "  <-- FAILED"}`,
    );
  }
  console.log(
    `${runs - bad} of ${runs} drains exited 0 with every request answered 200; exit codes: ${
      codes.join(",")
    }`,
  );
  if (bad) Deno.exit(1);
}
