import assert from "node:assert/strict";
import OpenAI from "openai";
import sharp from "sharp";
import { startServer } from "./test_server.ts";

// The random-weight fixture (fast, and the assertions below rely on its name and sizes).
const FIXTURE = new URL("../fixtures/models/sd-turbo-tiny", import.meta.url).pathname;
const server = await startServer([
  ...["--model", FIXTURE, "--served-model-name", "denoise/sd-turbo-tiny"],
  ...["--device", "cpu", "--max-image-pixels", "262144"],
]);
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
const isPng = (b: Uint8Array) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
const pngSize = (b: Uint8Array) => {
  const v = new DataView(b.buffer, b.byteOffset);
  return [v.getUint32(16), v.getUint32(20)];
};

Deno.test.afterAll(() => server.stop());

Deno.test("POST /v1/images/generations returns a PNG of the requested size with the seed used", async () => {
  const res = await post("/v1/images/generations", {
    prompt: "a dragon",
    size: "256x128",
    seed: 42,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("x-request-id") ?? "", /.+/);
  const body = await res.json();
  assert.equal(typeof body.created, "number");
  assert.equal(body.size, "256x128");
  assert.equal(body.output_format, "png");
  assert.equal(body.seed, 42);
  assert.equal(body.data[0].url, null);
  const png = Uint8Array.fromBase64(body.data[0].b64_json);
  assert.ok(isPng(png));
  assert.deepEqual(pngSize(png), [256, 128]);
});

Deno.test("a large PNG is deflated in stripes on the PNG workers and decodes whole", async () => {
  const req = { prompt: "a dragon", size: "512x512", seed: 3 };
  const [a, b] = await Promise.all([1, 2].map(() => post("/v1/images/generations", req)));
  const [pa, pb] = [await a.json(), await b.json()].map((j) =>
    Uint8Array.fromBase64(j.data[0].b64_json)
  );
  assert.deepEqual(pa, pb);
  // The striped encoder's signature: IHDR, then an IDAT holding only the 2-byte zlib header.
  const v = new DataView(pa.buffer, pa.byteOffset);
  assert.equal(v.getUint32(33), 2);
  assert.equal(new TextDecoder().decode(pa.subarray(37, 41)), "IDAT");
  const { data, info } = await sharp(pa).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [512, 512, 3]);
  assert.ok(new Set(data).size > 8);
});

Deno.test("same seed gives identical bytes over HTTP; an absent seed is drawn and returned", async () => {
  const req = { prompt: "a cat", size: "64x64", seed: 7 };
  const [a, b] = await Promise.all([
    post("/v1/images/generations", req),
    post("/v1/images/generations", req),
  ]);
  const [ja, jb] = [await a.json(), await b.json()];
  assert.equal(ja.data[0].b64_json, jb.data[0].b64_json);
  const random = await (await post("/v1/images/generations", { prompt: "a cat", size: "64x64" }))
    .json();
  assert.equal(typeof random.seed, "number");
  const replay = await (await post("/v1/images/generations", {
    prompt: "a cat",
    size: "64x64",
    seed: random.seed,
  })).json();
  assert.equal(replay.data[0].b64_json, random.data[0].b64_json);
});

Deno.test("n: 4 gives 4 distinct images", async () => {
  const body = await (await post("/v1/images/generations", {
    prompt: "a city",
    n: 4,
    size: "64x64",
    seed: 123,
  })).json();
  assert.equal(body.data.length, 4);
  assert.equal(new Set(body.data.map((d: { b64_json: string }) => d.b64_json)).size, 4);
});

Deno.test("output_format jpeg/webp and response_format url work", async () => {
  const jpeg = await (await post("/v1/images/generations", {
    prompt: "x",
    size: "64x64",
    output_format: "jpg",
    output_compression: 50,
  })).json();
  assert.equal(jpeg.output_format, "jpeg");
  assert.deepEqual(Array.from(Uint8Array.fromBase64(jpeg.data[0].b64_json).slice(0, 3)), [
    0xff,
    0xd8,
    0xff,
  ]);
  const url = await (await post("/v1/images/generations", {
    prompt: "x",
    size: "64x64",
    response_format: "url",
    output_format: "webp",
  })).json();
  assert.equal(url.data[0].b64_json, null);
  const img = await fetch(url.data[0].url);
  assert.equal(img.headers.get("content-type"), "image/webp");
  assert.equal(new TextDecoder().decode((await img.bytes()).slice(8, 12)), "WEBP");
  const missing = await fetch(`${server.url}/v1/images/files/nope`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "not_found");
});

const ERROR_CASES: [string, unknown, number, RegExp | string, string | null][] = [
  ["missing prompt", {}, 422, "field required", "prompt"],
  ["n out of range", { prompt: "x", n: 11 }, 422, "less than or equal to 10", "n"],
  ["n zero", { prompt: "x", n: 0 }, 422, "greater than or equal to 1", "n"],
  ["wrong type", { prompt: "x", n: "2" }, 422, "not a valid number", "n"],
  ["unknown enum", { prompt: "x", response_format: "file" }, 422, "enumeration", "response_format"],
  ["malformed JSON", "{oops", 422, "Invalid JSON body", null],
  [
    "size '1024x'",
    { prompt: "x", size: "1024x" },
    400,
    "Invalid size format: '1024x'. Width and height must be integers.",
    "size",
  ],
  ["size without x", { prompt: "x", size: "1024" }, 400, /Expected format: 'WIDTHxHEIGHT'/, "size"],
  [
    "size zero",
    { prompt: "x", size: "0x64" },
    400,
    "Invalid size: 0x64. Width and height must be positive integers.",
    "size",
  ],
  [
    "size over the pixel limit",
    { prompt: "x", size: "1024x1024" },
    400,
    /exceeds the maximum allowed size of 262144 pixels/,
    "size",
  ],
  ["size not a multiple of 8", { prompt: "x", size: "100x64" }, 400, /multiples of 8/, "size"],
  [
    "model mismatch",
    { prompt: "x", model: "dall-e-3" },
    400,
    "Model mismatch: request specifies 'dall-e-3' but server is running 'denoise/sd-turbo-tiny'.",
    "model",
  ],
  [
    "lora path on a server without --lora-root",
    { prompt: "x", lora: { name: "my_lora", local_path: "/tmp/lora", scale: 1 } },
    400,
    /LoRA local_path is not allowed: .*--lora-root DIR/,
    "lora",
  ],
  [
    "lora without name or path",
    { prompt: "x", lora: { scale: 1 } },
    400,
    "Invalid lora object: both name and path are required.",
    "lora",
  ],
  [
    "stream with response_format url",
    { prompt: "x", stream: true, response_format: "url" },
    400,
    /cannot be streamed/,
    "response_format",
  ],
  [
    "stream_options without stream",
    { prompt: "x", stream_options: { include_progress: true } },
    400,
    /only allowed with stream=true/,
    "stream_options",
  ],
  [
    "partial_images over 3",
    { prompt: "x", stream: true, partial_images: 4 },
    422,
    "less than or equal to 3",
    "partial_images",
  ],
  [
    "transparent background",
    { prompt: "x", background: "transparent" },
    400,
    /no alpha/,
    "background",
  ],
];

for (const [name, body, status, message, param] of ERROR_CASES) {
  Deno.test(`error contract: ${name} → ${status}`, async () => {
    const res = await post("/v1/images/generations", body);
    assert.equal(res.status, status);
    const json = await res.json();
    assert.deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(json.error.param, param);
    if (status === 422) {
      assert.ok(Array.isArray(json.detail));
      assert.deepEqual(Object.keys(json.detail[0]).sort(), ["loc", "msg", "type"]);
      assert.equal(json.detail[0].loc[0], "body");
      assert.ok(
        json.detail.some((d: { msg: string }) => d.msg.includes(message as string)),
        JSON.stringify(json.detail),
      );
    } else {
      assert.equal(json.detail, json.error.message);
      if (typeof message === "string") assert.equal(json.detail, message);
      else assert.match(json.detail, message);
    }
  });
}

Deno.test("oversized bodies get 413 in the documented shape", async () => {
  const res = await post("/v1/images/generations", {
    prompt: "x",
    user: "y".repeat(1024 * 1024 + 10),
  });
  assert.equal(res.status, 413);
  assert.match((await res.json()).error.message, /exceeds 1048576 bytes/);
});

Deno.test("chat completions: string, structured content, extra_body, top-level params", async () => {
  const plain = await (await post("/v1/chat/completions", {
    messages: [{ role: "user", content: "A beautiful landscape painting" }],
    extra_body: { height: 64, width: 64 },
  })).json();
  assert.equal(plain.object, "chat.completion");
  assert.equal(plain.model, "denoise/sd-turbo-tiny");
  assert.equal(plain.choices[0].finish_reason, "stop");
  assert.match(plain.choices[0].message.content[0].image_url.url, /^data:image\/png;base64,iVBOR/);
  assert.equal(plain.usage.completion_tokens, 1);
  const structured = await (await post("/v1/chat/completions", {
    messages: [{
      role: "user",
      content: [{ type: "text", text: "A beautiful landscape painting" }],
    }],
    extra_body: { size: "64x32", seed: 42, num_outputs_per_prompt: 2 },
  })).json();
  assert.equal(structured.choices[0].message.content.length, 2);
  const png = Uint8Array.fromBase64(
    structured.choices[0].message.content[0].image_url.url.split(",")[1],
  );
  assert.deepEqual(pngSize(png), [64, 32]);
  const topLevel = await (await post("/v1/chat/completions", {
    messages: [{ role: "user", content: "A beautiful landscape painting" }],
    size: "64x32",
    seed: 42,
    num_outputs_per_prompt: 2,
  })).json();
  assert.equal(
    topLevel.choices[0].message.content[0].image_url.url,
    structured.choices[0].message.content[0].image_url.url,
  );
  const bad = await post("/v1/chat/completions", { messages: [] });
  assert.equal(bad.status, 422);
  const noText = await post("/v1/chat/completions", {
    messages: [{ role: "system", content: "x" }],
  });
  assert.equal(noText.status, 400);
  const badSize = await post("/v1/chat/completions", {
    messages: [{ role: "user", content: "x" }],
    extra_body: { size: "big" },
  });
  assert.equal(badSize.status, 400);
});

Deno.test("GET /v1/models, /health, /openapi.json (= openapi.yaml), /docs", async () => {
  const models = await (await fetch(`${server.url}/v1/models`)).json();
  assert.equal(models.object, "list");
  assert.deepEqual(Object.keys(models.data[0]).sort(), [
    "created",
    "defaults",
    "family",
    "id",
    "max_edit_images",
    "max_image_pixels",
    "object",
    "owned_by",
    "parent",
    "root",
    "size_multiple",
  ]);
  assert.equal(models.data[0].parent, null); // the served model; adapters name it as parent
  assert.equal(models.data[0].max_image_pixels, 262144); // --max-image-pixels wins
  assert.deepEqual(models.data[0].defaults, {
    size: "512x512",
    num_inference_steps: 1,
    guidance_scale: 0,
  });
  assert.equal(models.data[0].family, "StableDiffusionPipeline");
  assert.equal(models.data[0].max_edit_images, 0); // sd-turbo-tiny has no VAE encoder
  assert.deepEqual(await (await fetch(`${server.url}/health`)).json(), { status: "healthy" });
  const { parse } = await import("yaml");
  const yaml = parse(await Deno.readTextFile(new URL("../openapi.yaml", import.meta.url)));
  assert.deepEqual(await (await fetch(`${server.url}/openapi.json`)).json(), yaml);
  const docs = await fetch(`${server.url}/docs`);
  assert.equal(docs.status, 200);
  assert.match(await docs.text(), /swagger-ui/i);
  const notFound = await fetch(`${server.url}/v2/nothing`);
  assert.equal(notFound.status, 404);
  assert.equal((await notFound.json()).error.code, "not_found");
});

Deno.test("the openai npm client: images.generate, chat.completions.create, models.list and errors", async () => {
  const client = new OpenAI({ apiKey: "none", baseURL: `${server.url}/v1`, maxRetries: 0 });
  const images = await client.images.generate({
    model: "denoise/sd-turbo-tiny",
    prompt: "a horse jumping over a fence nearby a babbling brook",
    n: 1,
    size: "256x256",
    response_format: "b64_json",
  });
  assert.ok(isPng(Uint8Array.fromBase64(images.data![0].b64_json!)));
  const chat = await client.chat.completions.create({
    model: "denoise/sd-turbo-tiny",
    messages: [{ role: "user", content: "A beautiful landscape painting" }],
    // Python's extra_body arrives flattened at the top level, as here.
    ...{ height: 64, width: 64, seed: 42 },
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  assert.match(JSON.stringify(chat.choices[0].message.content), /data:image\/png;base64/);
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models, ["denoise/sd-turbo-tiny"]);
  await assert.rejects(
    () => client.images.generate({ prompt: "x", size: "1024x" as "1024x1024" }),
    (e: unknown) =>
      e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "size" &&
      /Width and height must be integers/.test(e.message),
  );
  await assert.rejects(
    () => client.images.generate({ prompt: "x", n: 11 }),
    (e: unknown) => e instanceof OpenAI.UnprocessableEntityError && e.param === "n",
  );
});

Deno.test("the request log has one line per request with its timings", () => {
  assert.match(
    server.output(),
    /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO +POST \/v1\/images\/generations 200 id=\S+ ms=\d+ images=1 size=256x128 steps=1 seed=42 text_ms=\d+ denoise_ms=\d+ decode_ms=\d+ encode_ms=\d+$/m,
  );
});
