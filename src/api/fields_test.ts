import assert from "node:assert/strict";
import { ApiError } from "../errors.ts";
import { FAKE_MODEL, testConfig } from "../testing.ts";
import { checkModel, requestCache, toGenerateOptions } from "./fields.ts";

const config = testConfig({ maxImagePixels: 128 * 128, modelAliases: ["org/model"] });
const param = (p: string) => (e: ApiError) => e.status === 400 && e.options.param === p;

Deno.test("toGenerateOptions: wire names to engine options; the model's defaults fill the rest", async () => {
  const o = await toGenerateOptions(
    "p",
    {
      negative_prompt: "n",
      num_inference_steps: 3,
      guidance_scale: 2,
      cfg_normalization: true,
      seed: 11,
      n: null,
    },
    FAKE_MODEL,
    config,
  );
  assert.deepEqual(o, {
    prompt: "p",
    negativePrompt: "n",
    width: 64,
    height: 64,
    n: 1,
    steps: 3,
    guidanceScale: 2,
    trueCfgScale: undefined,
    cfgTruncation: undefined,
    cfgNormalization: 1,
    seed: 11,
    scheduler: undefined,
    cache: undefined,
    lora: undefined,
  });
});

Deno.test("toGenerateOptions: size, width and height; one side given makes a square", async () => {
  const size = (fields: object) =>
    toGenerateOptions("p", fields, FAKE_MODEL, config).then((o) => [o.width, o.height]);
  assert.deepEqual(await size({ size: "32x16" }), [32, 16]);
  assert.deepEqual(await size({ size: "32x16", width: 8 }), [8, 16]);
  assert.deepEqual(await size({ height: 40 }), [40, 40]);
  assert.deepEqual(await size({ size: "auto" }), [64, 64]);
  await assert.rejects(size({ size: "256x256" }), param("size"));
  await assert.rejects(size({ size: "36x36" }), param("size"));
  await assert.rejects(size({ size: "x" }), param("size"));
});

Deno.test("toGenerateOptions: a lora path without --lora-root is refused before any work", async () => {
  await assert.rejects(
    toGenerateOptions("p", { lora: { path: "/x" } }, FAKE_MODEL, config),
    param("lora"),
  );
});

Deno.test("checkModel: the served name, an alias or nothing pass; anything else is model_not_found", () => {
  for (const model of [undefined, null, "", "test/model", "org/model"]) checkModel(model, config);
  assert.throws(
    () => checkModel("other", config),
    (e: ApiError) =>
      e.options.code === "model_not_found" && /running 'test\/model'/.test(e.message),
  );
});

Deno.test("toGenerateOptions: a model card's step cap and fixed guidance replace what a request asks, with a warning", async () => {
  const distilled = testConfig({ maxSteps: 16, fixedGuidance: 0, servedModelName: "turbo" });
  const warnings: string[] = [];
  const log = { warning: (m: string) => warnings.push(m) };
  const o = await toGenerateOptions(
    "p",
    { num_inference_steps: 50, guidance_scale: 3.5 },
    FAKE_MODEL,
    distilled,
    log,
  );
  assert.equal(o.steps, 16);
  assert.equal(o.guidanceScale, 0);
  assert.deepEqual(warnings, [
    "num_inference_steps 50 lowered to 16: the most turbo runs",
    "guidance_scale 3.5 ignored: turbo is guidance-distilled and runs at 0",
  ]);
  // What the card allows is no warning; without a card nothing changes.
  const within = await toGenerateOptions(
    "p",
    { num_inference_steps: 16, guidance_scale: 0 },
    FAKE_MODEL,
    distilled,
    log,
  );
  assert.equal(within.steps, 16);
  assert.equal((await toGenerateOptions("p", {}, FAKE_MODEL, distilled, log)).guidanceScale, 0);
  assert.equal(warnings.length, 2);
  const plain = await toGenerateOptions(
    "p",
    { num_inference_steps: 50, guidance_scale: 3.5 },
    FAKE_MODEL,
    config,
    log,
  );
  assert.equal(plain.guidanceScale, 3.5);
  assert.equal(plain.steps, 50);
});

Deno.test("requestCache: a backend name or settings over the server's; bad values are 400s on cache", () => {
  const server = { backend: "tea_cache", threshold: 0.3, warmup: 1, maxCached: 3 } as const;
  assert.equal(requestCache(undefined, undefined), undefined);
  assert.equal(requestCache(null, server), server);
  assert.equal(requestCache("none", server), undefined);
  assert.deepEqual(requestCache({ threshold: 0.5 }, server), { ...server, threshold: 0.5 });
  assert.deepEqual(requestCache({ rel_l1_thresh: 0.5 }, server), { ...server, threshold: 0.5 });
  assert.deepEqual(requestCache("cache_dit", server), {
    backend: "cache_dit",
    threshold: 0.25,
    warmup: 2,
    maxCached: 3,
  });
  assert.deepEqual(requestCache("tea_cache", undefined), {
    backend: "tea_cache",
    threshold: 1,
    warmup: 2,
    maxCached: 2,
    taylorseer: 1,
  });
  for (
    const [field, message] of [
      [{ threshold: 0.1 }, /^cache: give a backend/],
      [{ backend: "tea_cache", max_cached: 0 }, /^cache: max_cached must be an integer ≥ 1$/],
      [{ backend: "tea_cache", speed: 2 }, /^cache: unknown field "speed"/],
    ] as const
  ) {
    assert.throws(
      () => requestCache(field, undefined),
      (e: ApiError) => param("cache")(e) && message.test(e.message),
      JSON.stringify(field),
    );
  }
});
