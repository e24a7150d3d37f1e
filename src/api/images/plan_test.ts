import assert from "node:assert/strict";
import { ApiError } from "../../errors.ts";
import { FakeEngine, testConfig } from "../../testing.ts";
import { planImages } from "./plan.ts";

const deps = { engine: new FakeEngine(), config: testConfig() };
const refused = (param: string) => (e: ApiError) => e.status === 400 && e.options.param === param;

Deno.test("planImages: format, compression, url, stream and progress from the request", async () => {
  const plan = await planImages({
    prompt: "p",
    output_format: "jpg",
    output_compression: 80,
    response_format: "url",
  }, deps);
  assert.deepEqual(
    [plan.format, plan.compression, plan.useUrl, plan.stream, plan.partialImages],
    ["jpeg", 80, true, false, 0],
  );
  const streamed = await planImages({
    prompt: "p",
    stream: true,
    partial_images: 2,
    stream_options: { include_progress: true },
  }, deps);
  assert.deepEqual([streamed.stream, streamed.partialImages, streamed.includeProgress], [
    true,
    2,
    true,
  ]);
});

Deno.test("planImages: contradictory or unsupported fields are 400s naming the field", async () => {
  await assert.rejects(
    planImages({ prompt: "p", background: "transparent" }, deps),
    refused("background"),
  );
  await assert.rejects(
    planImages({ prompt: "p", stream: true, response_format: "url" }, deps),
    refused("response_format"),
  );
  await assert.rejects(
    planImages({ prompt: "p", stream_options: { include_progress: true } }, deps),
    refused("stream_options"),
  );
  await assert.rejects(planImages({ prompt: "p", model: "nope" }, deps), refused("model"));
});

Deno.test("planImages: the encoder's side limit is checked before any work", async () => {
  const big = { engine: new FakeEngine(), config: testConfig({ maxImagePixels: 2 ** 30 }) };
  await assert.rejects(
    planImages({ prompt: "p", size: "16384x8", output_format: "webp" }, big),
    refused("size"),
  );
});

Deno.test("planImages: no model loaded is the engine's error, before the fields are read", async () => {
  const engine = new FakeEngine();
  engine.state = { status: "loading" };
  await assert.rejects(
    planImages({ prompt: "p", model: "nope" }, { engine, config: testConfig() }),
    (e: Error) => e.name === "EngineNotReady",
  );
});
