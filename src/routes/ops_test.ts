import assert from "node:assert/strict";
import { FakeEngine, testApp } from "../testing.ts";
import { VERSION } from "../version.ts";

Deno.test("/health follows the engine: loading (with its stage), ready, failed (no paths)", async () => {
  const engine = new FakeEngine();
  const { app } = testApp({ engine });
  engine.state = { status: "loading", stage: "downloading, 1 MB of 2 MB" };
  const loading = await app.request("/health");
  assert.equal(loading.status, 503);
  assert.deepEqual(await loading.json(), {
    status: "unhealthy",
    reason: "Model is loading: downloading, 1 MB of 2 MB",
  });
  engine.state = { status: "failed", reason: "cannot open /srv/models/x/unet.onnx" };
  const failed = await (await app.request("/health")).json();
  assert.equal(failed.reason, "Model failed to load: cannot open unet.onnx");
  engine.state = { status: "ready", model: new FakeEngine().model() };
  assert.deepEqual(await (await app.request("/health")).json(), { status: "healthy" });
});

Deno.test("/ping is 200 even while loading; /version and /metrics answer", async () => {
  const engine = new FakeEngine();
  engine.state = { status: "loading" };
  const { app } = testApp({ engine });
  assert.equal((await app.request("/ping")).status, 200);
  assert.deepEqual(await (await app.request("/version")).json(), { version: VERSION });
  const metrics = await app.request("/metrics");
  assert.match(metrics.headers.get("content-type")!, /^text\/plain/);
  assert.match(await metrics.text(), /vllm:num_requests_waiting\{model_name="test\/model"\} 0/);
});
