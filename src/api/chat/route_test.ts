import assert from "node:assert/strict";
import OpenAI from "openai";
import { FAKE_MODEL, FakeEngine, testApp } from "../../testing.ts";

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

/** A 24x16 PNG of one colour, as a data URL. */
async function pngDataUrl(): Promise<string> {
  const { default: sharp } = await import("sharp");
  const png = await sharp({ create: { width: 24, height: 16, channels: 3, background: "#c80000" } })
    .png().toBuffer();
  return `data:image/png;base64,${new Uint8Array(png).toBase64()}`;
}

Deno.test("chat: an image_url part edits that image (the openai SDK, strength at the top level)", async () => {
  const { app, engine } = testApp();
  const client = new OpenAI({
    baseURL: "http://denoise.test/v1",
    apiKey: "none",
    fetch: (url, init) => Promise.resolve(app.request(String(url), init)),
  });
  const completion = await client.chat.completions.create({
    messages: [{
      role: "user",
      content: [
        { type: "text", text: "make it blue" },
        { type: "image_url", image_url: { url: await pngDataUrl() } },
      ],
    }],
    strength: 0.5,
  } as never);
  const url =
    (completion.choices[0].message.content as unknown as { image_url: { url: string } }[])[0]
      .image_url.url;
  assert.match(url, /^data:image\/png;base64,/);
  const [request] = engine.requests;
  assert.equal(request.prompt, "make it blue");
  assert.deepEqual([request.width, request.height, request.edit?.strength], [24, 16, 0.5]);
  assert.deepEqual([...request.edit!.image.data.slice(0, 3)], [200, 0, 0]);
});

Deno.test("chat: an image that is not a data URL, or a model that cannot edit, is a 400", async () => {
  const content = (url: string) => [{ type: "text", text: "x" }, {
    type: "image_url",
    image_url: { url },
  }];
  const { post, engine } = testApp();
  const remote = await post("/v1/chat/completions", {
    messages: [{ role: "user", content: content("https://example.com/a.png") }],
  });
  assert.equal(remote.status, 400);
  assert.equal((await remote.json()).error.param, "messages[0].content[1].image_url.url");
  engine.state = { status: "ready", model: { ...FAKE_MODEL, maxEditImages: 0 } };
  const refused = await post("/v1/chat/completions", {
    messages: [{ role: "user", content: content(await pngDataUrl()) }],
  });
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, "model_cannot_edit");
  assert.equal(engine.requests.length, 0);
});
