import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import sharp from "sharp";
import { MAX_EDIT_BODY_BYTES } from "../../../compute/mod.ts";
import { FAKE_MODEL, FakeEngine, testApp } from "../../testing.ts";

/** A PNG whose pixels are `pixel(x, y)` (3 or 4 channels). */
async function png(
  width: number,
  height: number,
  pixel: (x: number, y: number) => number[],
): Promise<Uint8Array<ArrayBuffer>> {
  const channels = pixel(0, 0).length as 3 | 4;
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * channels);
  }
  return new Uint8Array(await sharp(data, { raw: { width, height, channels } }).png().toBuffer());
}

/** RGB pixels of a PNG, base64-encoded in a response. */
async function pixels(b64: string) {
  const { data, info } = await sharp(Uint8Array.fromBase64(b64)).raw().toBuffer({
    resolveWithObject: true,
  });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

const red = () => [200, 0, 0];
/** Transparent (edit) on the left half, opaque (keep) on the right. */
const leftHalf = (width: number) => (x: number) => [0, 0, 0, x < width / 2 ? 0 : 255];

/** The openai SDK talking to the in-process app. */
function client(app: ReturnType<typeof testApp>["app"]) {
  return new OpenAI({
    baseURL: "http://denoise.test/v1",
    apiKey: "none",
    maxRetries: 0,
    fetch: (url, init) => Promise.resolve(app.request(String(url), init)),
  });
}

const dataUrl = (bytes: Uint8Array) => `data:image/png;base64,${bytes.toBase64()}`;

Deno.test("edits: the openai SDK's images.edit with a file: image-to-image at the input's size", async () => {
  const { app, engine } = testApp();
  const image = await toFile(await png(40, 24, red), "in.png", { type: "image/png" });
  const res = await client(app).images.edit({ image, prompt: "a blue square", seed: 3 } as never);
  assert.equal(res.size, "40x24");
  const out = await pixels(res.data![0].b64_json!);
  assert.deepEqual([out.width, out.height], [40, 24]);
  // The fake engine moves the image toward grey by strength (default 0.8): 200 → 142.
  assert.deepEqual([...out.data.slice(0, 3)], [142, 102, 102]);
  const [request] = engine.requests;
  assert.equal(request.prompt, "a blue square");
  assert.equal(request.seed, 3);
  assert.equal(request.edit?.strength, 0.8);
  assert.equal(request.edit?.mask, undefined);
});

Deno.test("edits: the SDK with a mask: transparent pixels repainted, opaque ones kept", async () => {
  const { app, engine } = testApp();
  const res = await client(app).images.edit({
    image: await toFile(await png(16, 8, red), "in.png", { type: "image/png" }),
    mask: await toFile(await png(16, 8, leftHalf(16)), "mask.png", { type: "image/png" }),
    prompt: "x",
    strength: 1,
  } as never);
  const out = await pixels(res.data![0].b64_json!);
  assert.deepEqual([...out.data.slice(0, 3)], [128, 128, 128]); // left: repainted
  assert.deepEqual([...out.data.slice(15 * 3, 16 * 3)], [200, 0, 0]); // right: kept
  assert.deepEqual([...engine.requests[0].edit!.mask!.slice(0, 16)], [
    ...Array(8).fill(255),
    ...Array(8).fill(0),
  ]);
});

Deno.test("edits: image[] of two files is refused for a one-image model, before decoding", async () => {
  const { app, engine } = testApp();
  const file = async () => await toFile(await png(8, 8, red), "a.png", { type: "image/png" });
  const error = await client(app).images.edit({ image: [await file(), await file()], prompt: "x" })
    .then(() => undefined, (e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError);
  assert.equal(error.status, 400);
  assert.match(error.message, /Received 2 input images\. At most 1 image is supported/);
  assert.equal(engine.requests.length, 0);
});

Deno.test("edits: multipart values are read as the schema's types; size resizes the input", async () => {
  const { app, engine } = testApp();
  const form = new FormData();
  form.append("image", new Blob([await png(40, 24, red)], { type: "image/png" }), "in.png");
  form.append("prompt", "42"); // stays text
  for (
    const [k, v] of Object.entries({ n: "2", size: "16x32", strength: "0.5", stream: "False" })
  ) {
    form.append(k, v);
  }
  const res = await app.request("/v1/images/edits", { method: "POST", body: form });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.data.length, 2);
  assert.equal(body.size, "16x32");
  const [request] = engine.requests;
  assert.deepEqual([request.prompt, request.n, request.edit?.strength], ["42", 2, 0.5]);
  assert.deepEqual([request.edit?.image.width, request.edit?.image.height], [16, 32]);
});

Deno.test("edits: lora arrives as JSON text in a form (vLLM-Omni) and reaches the adapter resolver", async () => {
  const { app, logged } = testApp();
  const form = new FormData();
  form.append("image", new Blob([await png(8, 8, red)], { type: "image/png" }), "in.png");
  form.append("prompt", "x");
  form.append("lora", JSON.stringify({ name: "style", local_path: "/nowhere/style" }));
  const res = await app.request("/v1/images/edits", { method: "POST", body: form });
  // Read as an object (a string would be a 422), then refused by the resolver: no --lora-root.
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.param, "lora");
  // The edit is in the debug line of a request that runs.
  const ok = new FormData();
  ok.append("image", new Blob([await png(8, 8, red)], { type: "image/png" }), "in.png");
  ok.append("prompt", "x");
  await app.request("/v1/images/edits", { method: "POST", body: ok });
  assert.equal(logged().find((l) => l.msg === "generation request")?.edit, "strength 0.8");
});

Deno.test("edits: the JSON form with a data URL, and vLLM-Omni's mask_image alias", async () => {
  const { post, engine } = testApp();
  const res = await post("/v1/images/edits", {
    images: [{ image_url: dataUrl(await png(16, 8, red)) }],
    mask_image: { image_url: dataUrl(await png(16, 8, leftHalf(16))) },
    prompt: "x",
    response_format: "b64_json",
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).size, "16x8");
  assert.equal(engine.requests[0].edit?.mask?.[0], 255);
});

Deno.test("edits: vLLM-Omni's url field with a data URL", async () => {
  const { app, engine } = testApp();
  const form = new FormData();
  form.append("url", dataUrl(await png(16, 8, red)));
  form.append("prompt", "x");
  const res = await app.request("/v1/images/edits", { method: "POST", body: form });
  assert.equal(res.status, 200);
  assert.equal(engine.requests[0].edit?.image.width, 16);
});

Deno.test("edits: size auto scales a large input down to the pixel limit, in the model's multiple", async () => {
  const { post } = testApp({ config: { maxImagePixels: 64 * 64 } });
  const res = await post("/v1/images/edits", {
    images: [{ image_url: dataUrl(await png(300, 100, red)) }],
    prompt: "x",
  });
  // 300x100 scaled to 110.9x36.9; rounded, 112x40 would pass 4096 pixels, so both go down.
  assert.equal((await res.json()).size, "104x32");
});

Deno.test("edits: a stream sends image_edit.partial_image and image_edit.completed events", async () => {
  const { post } = testApp();
  const res = await post("/v1/images/edits", {
    images: [{ image_url: dataUrl(await png(8, 8, red)) }],
    prompt: "x",
    stream: true,
    partial_images: 1,
    stream_options: { include_progress: true },
  });
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const blocks = (await res.text()).split("\n\n").filter(Boolean);
  assert.deepEqual(blocks.map((b) => b.split("\n")[0]), [
    "event: image_edit.progress",
    "event: image_edit.progress",
    "event: image_edit.partial_image",
    "event: image_edit.completed",
  ]);
});

Deno.test("edits: the SDK's streaming edit yields OpenAI's event types", async () => {
  const { app } = testApp();
  const stream = await client(app).images.edit({
    image: await toFile(await png(8, 8, red), "in.png", { type: "image/png" }),
    prompt: "x",
    stream: true,
    partial_images: 2,
  });
  const types = [];
  for await (const event of stream) types.push(event.type);
  assert.deepEqual(types, [
    "image_edit.partial_image",
    "image_edit.partial_image",
    "image_edit.completed",
  ]);
});

/** Posts a multipart edit of `files` (field → bytes) and `fields`. */
async function postForm(
  app: ReturnType<typeof testApp>["app"],
  files: Record<string, Uint8Array<ArrayBuffer> | string>,
  fields: Record<string, string> = { prompt: "x" },
) {
  const form = new FormData();
  for (const [k, v] of Object.entries(files)) {
    form.append(k, typeof v === "string" ? v : new Blob([v], { type: "image/png" }), "f.png");
  }
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const res = await app.request("/v1/images/edits", { method: "POST", body: form });
  return { status: res.status, body: await res.json() };
}

Deno.test("edits: bad input is refused in the documented shape, and nothing is queued", async () => {
  const { app, engine } = testApp();
  const image = await png(16, 8, red);
  const huge = await png(8, 8, red);
  new DataView(huge.buffer).setUint32(16, 5000); // IHDR: 5000x5000 claimed
  new DataView(huge.buffer).setUint32(20, 5000);
  const cases: [
    Record<string, Uint8Array<ArrayBuffer> | string>,
    Record<string, string>,
    number,
    string,
    RegExp,
  ][] = [
    [{ image: new TextEncoder().encode("no") }, { prompt: "x" }, 400, "image", /not an image/],
    [{ image: huge }, { prompt: "x" }, 400, "image", /5000x5000 = 25000000 pixels/],
    [
      { image, mask: await png(8, 8, leftHalf(8)) },
      { prompt: "x" },
      400,
      "mask",
      /8x8 but the image is 16x8/,
    ],
    [{ image, mask: await png(16, 8, red) }, { prompt: "x" }, 400, "mask", /no alpha channel/],
    [{ image }, { prompt: "x", strength: "1.5" }, 422, "strength", /less than or equal to 1/],
    [{ image }, { prompt: "x", strength: "0" }, 422, "strength", /strength/],
    [{ image }, { prompt: "x", strength: "much" }, 422, "strength", /strength/],
    [{}, { prompt: "x" }, 422, "image", /field required/],
    [{ url: "https://example.com/a.png" }, { prompt: "x" }, 400, "image", /fetches no URLs/],
    [{ image }, { prompt: "x", background: "transparent" }, 400, "background", /alpha/],
  ];
  for (const [files, fields, status, param, message] of cases) {
    const res = await postForm(app, files, fields);
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.equal(res.body.error.param, param, JSON.stringify(res.body));
    assert.match(res.body.error.message, message);
    assert.equal(typeof res.body.detail === "string" || Array.isArray(res.body.detail), true);
  }
  assert.equal(engine.requests.length, 0);
});

Deno.test("edits: JSON refusals: strength, file_id, a non-data URL, no images", async () => {
  const { post, engine } = testApp();
  const images = [{ image_url: dataUrl(await png(8, 8, red)) }];
  const cases: [Record<string, unknown>, number, string][] = [
    [{ images, prompt: "x", strength: 2 }, 422, "strength"],
    [{ images: [{ file_id: "file-1" }], prompt: "x" }, 400, "images[0]"],
    [{ images: [{ image_url: "http://x/a.png" }], prompt: "x" }, 400, "images[0]"],
    [{ images: [], prompt: "x" }, 422, "images"],
    [{ prompt: "x" }, 422, "images"],
  ];
  for (const [body, status, param] of cases) {
    const res = await post("/v1/images/edits", body);
    const json = await res.json();
    assert.deepEqual([res.status, json.error.param], [status, param], JSON.stringify(json));
  }
  assert.equal(engine.requests.length, 0);
});

Deno.test("edits: a model that cannot edit answers 400 model_cannot_edit", async () => {
  const engine = new FakeEngine();
  engine.state = { status: "ready", model: { ...FAKE_MODEL, maxEditImages: 0 } };
  const { app } = testApp({ engine });
  const res = await postForm(app, { image: await png(8, 8, red) });
  assert.equal(res.status, 400);
  assert.equal(res.body.error.code, "model_cannot_edit");
  assert.match(res.body.error.message, /cannot edit images/);
});

Deno.test("edits: a body over the edits cap is 413; another content type 415", async () => {
  const { app } = testApp();
  const big = await app.request("/v1/images/edits", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new Uint8Array(MAX_EDIT_BODY_BYTES + 1),
  });
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, "request_too_large");
  const text = await app.request("/v1/images/edits", {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "x",
  });
  assert.equal(text.status, 415);
  // The other routes keep their 1 MiB cap.
  const generations = await app.request("/v1/images/generations", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new Uint8Array(2 * 1024 * 1024),
  });
  assert.equal(generations.status, 413);
});

Deno.test("edits: 300 random multipart and JSON bodies: each answered 200 or a documented 4xx in the documented shape", async () => {
  const { default: fc } = await import("fast-check");
  const { app } = testApp();
  const valid = await png(16, 8, red);
  // Mostly valid files and values, so that every check (and a run) is reached.
  const bytes = fc.oneof(
    { weight: 4, arbitrary: fc.constant(valid) },
    fc.nat({ max: valid.length }).map((n) => valid.slice(0, n)), // truncated
    fc.uint8Array({ maxLength: 64 }),
    fc.constant(await png(16, 8, leftHalf(16))),
    fc.constant(await png(8, 8, leftHalf(8))),
  );
  // Per field: valid values, then invalid ones (one draw in seven).
  const values: Record<string, [string[], string[]]> = {
    n: [["1", "2"], ["0", "11", "two"]],
    size: [["auto", "16x8", "8x8"], ["17x8", "1024x", "99999x99999"]],
    strength: [["0.5", "1"], ["0", "1.5", "much"]],
    stream: [["true", "False"], ["maybe"]],
    seed: [["1"], ["-1", "1.5"]],
    lora: [["[]"], ["{}", "not json", '{"name": "x"}']],
    output_format: [["png", "jpg"], ["gif"]],
    response_format: [["url", "b64_json"], ["file"]],
  };
  const fields = fc.record(
    Object.fromEntries(
      Object.entries(values).map(([k, [good, bad]]) => [
        k,
        fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...good) }, fc.constantFrom(...bad)),
      ]),
    ),
    { requiredKeys: [] },
  );
  const prompt = fc.oneof({ weight: 5, arbitrary: fc.constant("x") }, fc.string({ maxLength: 3 }));
  // An image, then maybe more files (a second image, a mask, vLLM-Omni's names).
  const files = fc.tuple(
    fc.tuple(fc.constantFrom("image", "image[]", "url"), bytes),
    fc.array(
      fc.tuple(fc.constantFrom("image", "image[]", "mask", "mask", "mask_image", "url"), bytes),
      { maxLength: 2 },
    ),
  ).map(([first, more]) => [first, ...more]);
  const multipart = fc.tuple(prompt, fields, files).map(([p, f, fs]) => {
    const form = new FormData();
    form.append("prompt", p);
    for (const [k, v] of Object.entries(f)) form.append(k, v as string);
    for (const [k, v] of fs) form.append(k, new Blob([v]), "f.png");
    return { body: form as BodyInit, headers: {} };
  });
  const dataUrl = (b: Uint8Array) => ({ image_url: `data:image/png;base64,${b.toBase64()}` });
  const json = fc.record({
    images: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: bytes.map(dataUrl) },
        fc.record({ image_url: fc.string({ maxLength: 8 }) }),
        fc.constant({ file_id: "file-1" }),
      ),
      { minLength: 1, maxLength: 2 },
    ),
    prompt,
    strength: fc.oneof(
      { weight: 6, arbitrary: fc.double({ min: 0.01, max: 1, noNaN: true }) },
      fc.double({ min: -1, max: 2, noNaN: true }),
      fc.string({ maxLength: 3 }),
    ),
    mask: fc.option(bytes.map(dataUrl)),
  }, { requiredKeys: ["prompt", "images"] }).map((b) => ({
    body: JSON.stringify(b) as BodyInit,
    headers: { "content-type": "application/json" },
  }));
  const statuses: Record<number, number> = {};
  for (const { body, headers } of fc.sample(fc.oneof(multipart, json), { numRuns: 300, seed: 3 })) {
    const res = await app.request("/v1/images/edits", { method: "POST", body, headers });
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    if (res.status === 200) {
      await res.body?.cancel();
      continue;
    }
    const answer = await res.json();
    assert.ok([400, 422].includes(res.status), `${res.status} ${JSON.stringify(answer)}`);
    assert.equal(typeof answer.error.message, "string");
    assert.ok("detail" in answer && "param" in answer.error && "code" in answer.error);
  }
  // Every kind of answer was reached (seed 3: 200 ×33, 400 ×159, 422 ×108).
  assert.ok(
    statuses[200] > 20 && statuses[400] > 20 && statuses[422] > 20,
    JSON.stringify(statuses),
  );
});

Deno.test("edits: the step cache field, as a backend name or JSON text in the form, reaches the engine; a bad one is a 400", async () => {
  const { app, engine } = testApp();
  const form = (cache: string) => {
    const body = new FormData();
    body.set("prompt", "p");
    body.set("cache", cache);
    return png(16, 16, red).then((bytes) => {
      body.set("image", new File([bytes], "in.png", { type: "image/png" }));
      return app.request("/v1/images/edits", { method: "POST", body });
    });
  };
  assert.equal((await form("tea_cache")).status, 200);
  assert.equal(engine.requests[0].cache?.backend, "tea_cache");
  assert.equal((await form('{"backend":"cache_dit","threshold":0.3}')).status, 200);
  assert.deepEqual(
    [engine.requests[1].cache?.backend, engine.requests[1].cache?.threshold],
    ["cache_dit", 0.3],
  );
  const bad = await form('{"threshold":0.3}');
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, "cache");
});
