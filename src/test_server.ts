/**
 * Starts `deno task serve` as a user would (a child process on a free port) for HTTP tests,
 * and waits until `/health` reports ready (or the expected state).
 *
 * @module
 */

/** A running server process. */
export interface TestServer {
  url: string;
  stop(): Promise<void>;
  output(): string;
  /** Sends a signal without waiting (`stop()` still reaps the process). */
  kill(signal: Deno.Signal): void;
  /** Settles when the process exits. */
  exited: Promise<Deno.CommandStatus>;
  /** The process id (for `/proc/<pid>/status`). */
  pid: number;
}

/** Spawns the server with `args`; resolves once it listens (and, unless `waitReady` is false, is healthy). */
export async function startServer(
  args: string[] = [],
  options: { waitReady?: boolean; env?: Record<string, string> } = {},
): Promise<TestServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      new URL("./main.ts", import.meta.url).pathname,
      "--port",
      "0",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) log += decoder.decode(chunk);
  };
  const pumps = [pump(child.stdout), pump(child.stderr)];
  let exit: Deno.CommandStatus | undefined;
  void child.status.then((status) => (exit = status));
  const deadline = Date.now() + 60_000;
  let url = "";
  while (!url) {
    const m = log.match(/listening on (http:\/\/[\w.:[\]-]+)/);
    if (m) url = m[1];
    else if (exit) {
      await Promise.all(pumps);
      throw new Error(
        `server exited with ${exit.code}${exit.signal ? ` (${exit.signal})` : ""}:\n${log}`,
      );
    } else if (Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (options.waitReady ?? true) {
    for (;;) {
      const res = await fetch(`${url}/health`);
      await res.body?.cancel();
      if (res.status === 200) break;
      if (Date.now() > deadline || /failed to load/.test(log)) {
        throw new Error(`server not ready:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    output: () => log,
    kill: (signal) => child.kill(signal),
    exited: child.status,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      await child.status;
      await Promise.all(pumps);
    },
  };
}

/**
 * A server whose model cannot load (a folder holding only `model_index.json`), for the 503 paths.
 * `stop()` also removes the folder.
 */
export async function startUnloadableServer(): Promise<TestServer> {
  const dir = await Deno.makeTempDir({ prefix: "unloadable-model-" });
  await Deno.writeTextFile(
    `${dir}/model_index.json`,
    JSON.stringify({ _class_name: "StableDiffusionPipeline" }),
  );
  const server = await startServer(["--model", dir, "--device", "cpu"], { waitReady: false });
  return {
    ...server,
    async stop() {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
