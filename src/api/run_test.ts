import assert from "node:assert/strict";
import { CancelledError } from "../engine/errors.ts";
import { ApiError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { FakeEngine, fakeResult } from "../testing.ts";
import { Outcome } from "./outcome.ts";
import { generate, type RequestContext, runGeneration } from "./run.ts";

function setup(requestTimeoutS?: number) {
  const lines: Record<string, unknown>[] = [];
  const engine = new FakeEngine();
  const deps = {
    engine,
    config: { requestTimeoutS },
    live: {},
    log: createLogger("debug", "json", (l) => lines.push(JSON.parse(l))),
  };
  const request = (signal?: AbortSignal): RequestContext => ({
    id: "r1",
    signal,
    outcome: new Outcome(),
    stream: false,
  });
  return { engine, deps, request, lines };
}

const hang = (engine: FakeEngine) =>
  engine.run = (request) =>
    new Promise((_, reject) =>
      request.signal!.addEventListener("abort", () => reject(new CancelledError("cancelled")))
    );

Deno.test("runGeneration: a client that leaves is a 499, the server's timeout a 504", async () => {
  const { engine, deps, request } = setup(60);
  hang(engine);
  const left = new AbortController();
  const running = runGeneration(deps, { prompt: "x" }, request(left.signal));
  left.abort();
  await assert.rejects(running, (e: ApiError) => e.status === 499);
  const timedOut = runGeneration(
    { ...deps, config: { requestTimeoutS: 0.02 } },
    { prompt: "x" },
    request(),
  );
  await assert.rejects(timedOut, (e: ApiError) => e.status === 504);
});

Deno.test("runGeneration: logs the request's parameters at debug level, with its id", async () => {
  const { deps, request, lines } = setup();
  await runGeneration(deps, { prompt: "a cat", width: 8, height: 16, seed: 5 }, request());
  assert.deepEqual(lines, [{
    ts: lines[0].ts,
    level: "debug",
    msg: "generation request",
    id: "r1",
    prompt: "a cat",
    size: "8x16",
    seed: "5",
    stream: false,
  }]);
});

Deno.test("generate: encodes each image and reports the seed as a number", async () => {
  const { deps, request } = setup();
  const g = await generate(
    deps,
    { prompt: "x", n: 2, seed: 2 ** 32 - 1 },
    { format: "webp" },
    request(),
  );
  assert.equal(g.seed, 4294967295);
  assert.equal(g.images.length, 2);
  assert.equal(g.format, "webp");
  assert.ok(g.result.timings.encodeMs! >= 0);
});

Deno.test("generate: a client gone once the images are made is a 499, before encoding", async () => {
  const { engine, deps, request } = setup();
  const left = new AbortController();
  engine.run = (r) => {
    left.abort(); // during the last decoder call, say: the result still arrives
    return Promise.resolve(fakeResult(r));
  };
  await assert.rejects(
    generate(deps, { prompt: "x" }, { format: "png" }, request(left.signal)),
    (e: ApiError) => e.status === 499,
  );
});
