import assert from "node:assert/strict";
import { FakeEngine, testApp } from "../../testing.ts";

const messages = [{ role: "user", content: "a red cube" }];

Deno.test("chat: a whole completion carries the images as data URLs and the seed", async () => {
  const { post, engine } = testApp();
  const res = await post("/v1/chat/completions", {
    messages,
    extra_body: { size: "16x16", num_outputs_per_prompt: 2, seed: 9 },
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(body.model, "test/model");
  assert.equal(body.seed, 9);
  assert.equal(body.choices[0].message.content.length, 2);
  assert.match(body.choices[0].message.content[0].image_url.url, /^data:image\/png;base64,/);
  assert.deepEqual(body.usage, { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
  assert.deepEqual([engine.requests[0].width, engine.requests[0].n], [16, 2]);
});

Deno.test("chat: a stream sends progress chunks, the images, usage, then [DONE]", async () => {
  const { post } = testApp();
  const res = await post("/v1/chat/completions", {
    messages,
    stream: true,
    stream_options: { include_usage: true, include_progress: true },
  });
  const data = (await res.text()).split("\n\n").filter(Boolean).map((b) =>
    b.slice("data: ".length)
  );
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  assert.deepEqual(chunks.map((c) => c.progress?.step ?? c.choices[0]?.finish_reason ?? "usage"), [
    1,
    2,
    "stop",
    "usage",
  ]);
  assert.equal(chunks[2].seed, 7);
});

Deno.test("chat: an error in a stream is a data event, still ended by [DONE]", async () => {
  const engine = new FakeEngine();
  engine.run = () => Promise.reject(new Error("/secret/path broke"));
  const { post, logged } = testApp({ engine });
  const text = await (await post("/v1/chat/completions", { messages, stream: true })).text();
  const [error, done] = text.split("\n\n").filter(Boolean).map((b) => b.slice("data: ".length));
  assert.equal(JSON.parse(error).object, "error");
  assert.doesNotMatch(error, /secret/);
  assert.equal(done, "[DONE]");
  assert.ok(logged().some((l) => l.level === "error" && /request failed/.test(String(l.msg))));
  assert.ok(logged().some((l) => l.msg === "POST /v1/chat/completions 500"));
});

Deno.test("chat: the answer names the served model unless the request named an adapter", async () => {
  const { post } = testApp();
  const res = await post("/v1/chat/completions", { messages, model: "anything" });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).model, "test/model");
});

Deno.test("chat: no text in the user messages is a 400 on messages", async () => {
  const { post, engine } = testApp();
  const res = await post("/v1/chat/completions", {
    messages: [{ role: "system", content: "be nice" }],
  });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.param, "messages");
  assert.equal(engine.requests.length, 0);
});
