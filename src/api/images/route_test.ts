import assert from "node:assert/strict";
import { decode } from "fast-png";
import { CancelledError, QueueFull } from "../../engine/errors.ts";
import { FakeEngine, testApp } from "../../testing.ts";

Deno.test("images: JSON answer with the requested size, format and the seed as a number", async () => {
  const { post, engine } = testApp();
  const res = await post("/v1/images/generations", { prompt: "a cat", size: "32x16", seed: 42 });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.size, "32x16");
  assert.equal(body.output_format, "png");
  assert.equal(body.seed, 42);
  const png = decode(Uint8Array.fromBase64(body.data[0].b64_json));
  assert.deepEqual([png.width, png.height], [32, 16]);
  assert.equal(engine.requests[0].seed, 42);
  assert.equal(engine.requests[0].prompt, "a cat");
});

Deno.test("images: response_format url stores the image under the listening address", async () => {
  const { post, app } = testApp({
    services: { live: { draining: false, listenUrl: "http://127.0.0.1:9" } },
  });
  const body = await (await post("/v1/images/generations", {
    prompt: "x",
    response_format: "url",
    output_format: "jpeg",
  })).json();
  const url = new URL(body.data[0].url);
  assert.equal(url.origin, "http://127.0.0.1:9");
  const image = await app.request(url.pathname);
  assert.equal(image.status, 200);
  assert.equal(image.headers.get("content-type"), "image/jpeg");
});

Deno.test("images: --public-url wins over the listening address", async () => {
  const { post } = testApp({
    config: { publicUrl: "https://img.example" },
    services: { live: { draining: false, listenUrl: "http://127.0.0.1:9" } },
  });
  const body = await (await post("/v1/images/generations", {
    prompt: "x",
    response_format: "url",
  })).json();
  assert.match(body.data[0].url, /^https:\/\/img\.example\/v1\/images\/files\//);
});

Deno.test("images: a stream sends progress, partial images, then one completed event per image", async () => {
  const { post, logged } = testApp();
  const res = await post("/v1/images/generations", {
    prompt: "x",
    n: 2,
    seed: 5,
    stream: true,
    partial_images: 1,
    stream_options: { include_progress: true },
  });
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const events = (await res.text()).split("\n\n").filter(Boolean).map((block) =>
    JSON.parse(block.split("\n").find((l) => l.startsWith("data:"))!.slice(5))
  );
  assert.deepEqual(events.map((e) => e.type), [
    "image_generation.progress",
    "image_generation.progress",
    "image_generation.partial_image",
    "image_generation.partial_image",
    "image_generation.completed",
    "image_generation.completed",
  ]);
  assert.deepEqual(events.slice(4).map((e) => [e.image_index, e.seed]), [[0, 5], [1, 5]]);
  // The access line is written when the stream ends, with what it made.
  const access = logged().find((l) => String(l.msg).startsWith("POST"));
  assert.equal(access?.msg, "POST /v1/images/generations 200");
  assert.equal(access?.seed, "5");
  assert.equal(access?.images, 2);
});

Deno.test("images: a stream its reader cancels cancels the generation (499), even with the request's signal never aborted", async () => {
  // As a client that leaves mid-stream looks when the server sees the response cancelled but
  // not the request: app.request never aborts the request's signal.
  const engine = new FakeEngine();
  engine.run = (request) => {
    request.onStep?.({ step: 0, total: 2, timestep: 1, ms: 1, cached: false });
    return new Promise((_, reject) =>
      request.signal?.addEventListener("abort", () => reject(new CancelledError("cancelled")))
    );
  };
  const { post, logged } = testApp({ engine });
  const res = await post("/v1/images/generations", {
    prompt: "x",
    stream: true,
    stream_options: { include_progress: true },
  });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  const deadline = Date.now() + 5000;
  while (!logged().some((l) => l.msg === "POST /v1/images/generations 499")) {
    assert.ok(Date.now() < deadline, "the generation was not cancelled");
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(engine.requests[0].signal?.aborted, true);
});

Deno.test("images: an engine error after the stream started becomes an error event", async () => {
  const engine = new FakeEngine();
  engine.run = () => Promise.reject(new QueueFull(1));
  const { post } = testApp({ engine });
  const text = await (await post("/v1/images/generations", { prompt: "x", stream: true })).text();
  assert.match(text, /^event: error\n/);
  assert.equal(JSON.parse(text.split("data:")[1]).error.code, "queue_full");
});

Deno.test("images: the engine's refusals keep their statuses and retry headers", async () => {
  const engine = new FakeEngine();
  const { post } = testApp({ engine });
  engine.state = { status: "loading", stage: "downloading" };
  const loading = await post("/v1/images/generations", { prompt: "x" });
  assert.equal(loading.status, 503);
  assert.equal(loading.headers.get("retry-after"), "5");
  assert.equal((await loading.json()).error.code, "engine_not_ready");
  engine.state = { status: "failed", reason: "bad graph" };
  const failed = await post("/v1/images/generations", { prompt: "x" });
  assert.equal(failed.status, 503);
  assert.equal(failed.headers.get("x-should-retry"), "false");
  assert.equal(failed.headers.get("retry-after"), null);
  engine.state = { status: "ready", model: engine.model.call(new FakeEngine()) };
  engine.run = () => Promise.reject(new QueueFull(3));
  const full = await post("/v1/images/generations", { prompt: "x" });
  assert.equal(full.status, 429);
  assert.equal(full.headers.get("retry-after"), "2");
});

Deno.test("images: --request-timeout cancels the generation and answers 504", async () => {
  const engine = new FakeEngine();
  engine.run = (request) =>
    new Promise((_, reject) =>
      request.signal!.addEventListener("abort", () => reject(new CancelledError("cancelled")))
    );
  const { post } = testApp({ engine, config: { requestTimeoutS: 0.05 } });
  const res = await post("/v1/images/generations", { prompt: "x" });
  assert.equal(res.status, 504);
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.equal((await res.json()).error.code, "request_timeout");
});
