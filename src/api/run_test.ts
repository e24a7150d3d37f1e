import assert from "node:assert/strict";
import { CancelledError } from "../engine/errors.ts";
import { ApiError } from "../errors.ts";
import { FakeEngine, fakeResult } from "../testing.ts";
import { generate, runGeneration } from "./run.ts";

const hang = (engine: FakeEngine) =>
  engine.run = (request) =>
    new Promise((_, reject) =>
      request.signal!.addEventListener("abort", () => reject(new CancelledError("cancelled")))
    );

Deno.test("runGeneration: a client that leaves is a 499, the server's timeout a 504", async () => {
  const engine = new FakeEngine();
  hang(engine);
  const left = new AbortController();
  const deps = { engine, config: { requestTimeoutS: 60 }, live: {} };
  const running = runGeneration(deps, { prompt: "x" }, left.signal);
  left.abort();
  await assert.rejects(running, (e: ApiError) => e.status === 499);
  const timedOut = runGeneration({ ...deps, config: { requestTimeoutS: 0.02 } }, { prompt: "x" });
  await assert.rejects(timedOut, (e: ApiError) => e.status === 504);
});

Deno.test("generate: encodes each image and reports the seed as a number", async () => {
  const engine = new FakeEngine();
  const deps = { engine, config: {}, live: {} };
  const g = await generate(deps, { prompt: "x", n: 2, seed: 2 ** 32 - 1 }, { format: "webp" });
  assert.equal(g.seed, 4294967295);
  assert.equal(g.images.length, 2);
  assert.equal(g.format, "webp");
  assert.ok(g.result.timings.encodeMs! >= 0);
});

Deno.test("generate: a client gone once the images are made is a 499, before encoding", async () => {
  const left = new AbortController();
  const engine = new FakeEngine();
  engine.run = (request) => {
    left.abort(); // during the last decoder call, say: the result still arrives
    return Promise.resolve(fakeResult(request));
  };
  const deps = { engine, config: {}, live: {} };
  await assert.rejects(
    generate(deps, { prompt: "x" }, { format: "png", signal: left.signal }),
    (e: ApiError) => e.status === 499,
  );
});
