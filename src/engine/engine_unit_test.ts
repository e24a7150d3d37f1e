/**
 * The engine itself, constructed directly around its real worker and the embedded model: states,
 * its own errors, cancellation and results. (engine_test.ts drives it through whole servers.)
 */
import assert from "node:assert/strict";
import { Engine } from "./engine.ts";
import {
  CancelledError,
  EngineNotReady,
  ModelLoadFailed,
  QueueFull,
  ShuttingDown,
} from "./errors.ts";

const EMBEDDED = new URL("../../models/shapes-tiny", import.meta.url).pathname;
const settings = { maxQueue: 4, maxBatchSize: 4, batchWaitMs: 0 };

Deno.test("Engine: loading, then ready; generates, and the same seed gives the same pixels", async () => {
  const engine = new Engine(settings);
  const prepared = Promise.withResolvers<string>();
  const started = engine.start((report) => {
    report("fetching");
    return prepared.promise;
  }, { device: "cpu" });
  assert.deepEqual(engine.state, { status: "loading", stage: "fetching" });
  assert.throws(() => engine.model(), (e) => e instanceof EngineNotReady && e.stage === "fetching");
  assert.throws(() => engine.generate({ prompt: "x" }), EngineNotReady);
  prepared.resolve(EMBEDDED);
  await started;
  try {
    assert.equal(engine.state.status, "ready");
    const request = { prompt: "a red circle", width: 64, height: 64, steps: 2, seed: 3 };
    const [a, b] = await Promise.all([engine.generate(request), engine.generate(request)]);
    assert.equal(a.seed, 3n);
    assert.deepEqual(a.images[0].data, b.images[0].data);
    assert.equal(engine.running + engine.waiting, 0);
    await assert.rejects(
      engine.generate({ ...request, signal: AbortSignal.abort() }),
      CancelledError,
    );
    const pending = engine.generate({ ...request, steps: 50 });
    engine.abortAll(new ShuttingDown());
    await assert.rejects(pending, ShuttingDown);
    await engine.idle();
  } finally {
    await engine.close();
  }
});

Deno.test("Engine: a full queue refuses with QueueFull; a failed load stays failed", async () => {
  const engine = new Engine({ ...settings, maxQueue: 0 });
  await engine.start(() => Promise.reject(new Error("no such model")), { device: "cpu" });
  assert.deepEqual(engine.state, { status: "failed", reason: "no such model" });
  assert.throws(() => engine.model(), ModelLoadFailed);
  const ready = new Engine({ ...settings, maxQueue: 0 });
  await ready.start(() => Promise.resolve(EMBEDDED), { device: "cpu" });
  try {
    assert.throws(
      () => ready.generate({ prompt: "x" }),
      (e) => e instanceof QueueFull && e.maxQueue === 0,
    );
  } finally {
    await ready.close();
  }
});
