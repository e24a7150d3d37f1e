import assert from "node:assert/strict";
import OpenAI from "openai";
import { serializeSafetensors } from "../../compute/mod.ts";
import { startServer } from "../test_server.ts";

// The sd15-tiny fixture and its random adapters (PEFT folder, diffusers and Kohya files).
const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "denoise-lora-root-" });
const outside = await Deno.makeTempDir({ prefix: "denoise-lora-outside-" });
await Deno.mkdir(`${root}/adapters`);
for (const name of ["diffusers.safetensors", "kohya.safetensors"]) {
  await Deno.copyFile(`${FIXTURES}/loras/sd15-tiny/${name}`, `${root}/adapters/${name}`);
}
await Deno.mkdir(`${root}/adapters/peft`);
for (const name of ["adapter_config.json", "adapter_model.safetensors"]) {
  await Deno.copyFile(`${FIXTURES}/loras/sd15-tiny/peft/${name}`, `${root}/adapters/peft/${name}`);
}
// Things that are not usable adapters, and a link out of the root.
await Deno.mkdir(`${root}/empty`);
await Deno.writeFile(`${root}/broken.safetensors`, new Uint8Array([255, 0, 0, 0, 0, 0, 0, 0, 1]));
await Deno.writeFile(
  `${root}/other-model.safetensors`,
  serializeSafetensors({
    "lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight": {
      shape: [1, 4],
      data: new Float32Array(4),
    },
    "lora_unet_transformer_blocks_0_attn_to_q.lora_up.weight": {
      shape: [4, 1],
      data: new Float32Array(4),
    },
  }),
);
await Deno.copyFile(
  `${FIXTURES}/loras/sd15-tiny/kohya.safetensors`,
  `${outside}/secret.safetensors`,
);
await Deno.symlink(`${outside}/secret.safetensors`, `${root}/link.safetensors`);

const server = await startServer([
  ...["--model", `${FIXTURES}/models/sd15-tiny`, "--device", "cpu"],
  ...["--lora-root", root, "--lora-modules", `style=${FIXTURES}/loras/sd15-tiny/peft`],
]);
Deno.test.afterAll(async () => {
  await server.stop();
  await Deno.remove(root, { recursive: true });
  await Deno.remove(outside, { recursive: true });
});

const BASE = { prompt: "a red cube", size: "64x64", seed: 42, num_inference_steps: 2 };

async function image(lora?: unknown): Promise<string> {
  const res = await fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...BASE, lora }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.data[0].b64_json;
}

async function refused(lora: unknown, message: RegExp): Promise<void> {
  const res = await fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...BASE, lora }),
  });
  const body = await res.json();
  assert.equal(res.status, 400, JSON.stringify(body));
  assert.equal(body.error.param, "lora");
  assert.equal(body.error.type, "invalid_request_error");
  assert.match(body.error.message, message);
  // No path of this server: the roots and the fixtures are named relative to where they were found.
  for (const path of [root, await Deno.realPath(root), FIXTURES]) {
    assert.equal(body.error.message.includes(path), false, body.error.message);
  }
}

Deno.test("an adapter under --lora-root changes the image; scale 0 is the base; formats and names agree", async () => {
  const base = await image();
  const peft = await image({ name: "my_lora", local_path: `${root}/adapters/peft`, scale: 1.0 });
  assert.notEqual(peft, base);
  // Relative to the root, vLLM's aliases, and the name registered with --lora-modules.
  assert.equal(await image({ lora_name: "x", lora_path: "adapters/peft" }), peft);
  assert.equal(await image({ name: "style" }), peft);
  assert.equal(await image({ name: "style", scale: 0 }), base);
  // A list applies adapters together, in any order.
  const both = [
    { name: "style", scale: 0.5 },
    { path: "adapters/kohya.safetensors", lora_scale: -0.25 },
  ];
  const ab = await image(both);
  assert.notEqual(ab, peft);
  assert.equal(await image([...both].reverse()), ab);
  assert.equal(
    await image({ local_path: "adapters/kohya.safetensors", scale: 0.7 }),
    await image({ local_path: "adapters/diffusers.safetensors", scale: 0.7 }),
  );
});

Deno.test("paths outside the roots are refused before anything is read", async () => {
  await refused({ name: "a", local_path: "../../etc/passwd" }, /outside every --lora-root/);
  await refused({ name: "a", local_path: `${outside}/secret.safetensors` }, /outside every/);
  await refused({ name: "a", local_path: "link.safetensors" }, /through a symbolic link/);
  await refused({ name: "a", local_path: "missing" }, /does not exist/);
  await refused({ name: "nobody" }, /unknown LoRA name 'nobody': registered names are style/);
  await refused({ name: "style", local_path: "adapters/peft" }, /path conflicts/);
});

Deno.test("unusable adapters are 400s that say why, and the server stays healthy", async () => {
  await refused({ name: "a", local_path: "empty" }, /LoRA folder 'empty' has no adapter_model/);
  // Absolute paths under a root, and the root itself, are named relative to it.
  await refused({ local_path: `${root}/empty` }, /LoRA folder 'empty' has no adapter_model/);
  await refused({ local_path: root }, /LoRA folder '\.' has no adapter_model.safetensors/);
  await refused({ local_path: `${root}/adapters/../empty/` }, /LoRA folder 'empty' has no/);
  await refused(
    { local_path: `${root}/broken.safetensors` },
    /^broken\.safetensors is not a valid safetensors file/,
  );
  await refused({ name: "a", local_path: "broken.safetensors" }, /not a valid safetensors file/);
  await refused(
    { name: "a", local_path: "other-model.safetensors" },
    /1 of 1 LoRA layers match no weight of this model, e.g. 'transformer_blocks_0_attn_to_q'/,
  );
  await refused({ name: "style", scale: 11 }, /between -10 and 10/);
  const wrongType = await fetch(`${server.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...BASE, lora: [1] }),
  });
  assert.equal(wrongType.status, 422);
  assert.equal((await wrongType.json()).error.param, "lora");
  const res = await fetch(`${server.url}/health`);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.ok(!/ 500 |ERROR/.test(server.output()), server.output());
});

Deno.test("concurrent requests with and without an adapter each get their own image", async () => {
  const base = await image();
  const adapted = await image({ name: "style" });
  const got = await Promise.all([
    image(),
    image({ name: "style" }),
    image(),
    image({ name: "style" }),
  ]);
  assert.deepEqual(got, [base, adapted, base, adapted]);
});

Deno.test("chat: lora in extra_body (curl) and at the top level (the openai SDK's extra_body)", async () => {
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none" });
  const params = { height: 64, width: 64, seed: 42, num_inference_steps: 2 };
  const nested = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: "a red cube" }],
      extra_body: { ...params, lora: { name: "style" } },
    }),
  }).then((r) => r.json());
  const flat = await client.chat.completions.create({
    model: "sd15-tiny",
    messages: [{ role: "user", content: "a red cube" }],
    // @ts-expect-error: image parameters are extensions of the chat request
    extra_body: { ...params, lora: { name: "style" } },
  });
  const url = (c: { choices: { message: { content: unknown } }[] }) =>
    (c.choices[0].message.content as { image_url: { url: string } }[])[0].image_url.url;
  assert.equal(url(nested), url(flat as never));
  assert.equal(url(nested).split(",")[1], await image({ name: "style" }));
});

Deno.test("/v1/models lists each --lora-modules adapter with parent, without server paths", async () => {
  const { data } = await (await fetch(`${server.url}/v1/models`)).json();
  const base = data[0];
  assert.equal(base.parent, null);
  assert.deepEqual(data.slice(1), [{
    id: "style",
    object: "model",
    created: base.created,
    owned_by: "denoise",
    root: "peft", // the folder's name, not its path
    parent: base.id,
  }]);
});

Deno.test("model: an adapter's name applies it at scale 1, on both endpoints; a contradicting lora is a 400", async () => {
  const generate = (fields: Record<string, unknown>) =>
    fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...BASE, ...fields }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
  const styled = await image({ name: "style" });
  const viaModel = await generate({ model: "style" });
  assert.equal(viaModel.status, 200, JSON.stringify(viaModel.body));
  assert.equal(viaModel.body.data[0].b64_json, styled);
  // The same adapter in lora is consistent; its scale wins.
  const scaled = await generate({ model: "style", lora: { name: "style", scale: 0 } });
  assert.equal(scaled.body.data[0].b64_json, await image());
  const listed = await generate({
    model: "style",
    lora: [{ name: "style" }, { path: "adapters/kohya.safetensors", scale: 0.5 }],
  });
  assert.equal(
    listed.body.data[0].b64_json,
    await image([{ name: "style" }, { path: "adapters/kohya.safetensors", scale: 0.5 }]),
  );
  const other = await generate({ model: "style", lora: { path: "adapters/kohya.safetensors" } });
  assert.equal(other.status, 400);
  assert.equal(other.body.error.param, "model");
  assert.match(other.body.error.message, /model 'style' is a LoRA adapter of .*does not apply it/);
  const unknown = await generate({ model: "nope" });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.error.message, /Model mismatch.*Its LoRA adapters are style\./);

  const chat = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "style",
      messages: [{ role: "user", content: "a red cube" }],
      extra_body: { height: 64, width: 64, seed: 42, num_inference_steps: 2 },
    }),
  }).then((r) => r.json());
  assert.equal(chat.choices[0].message.content[0].image_url.url.split(",")[1], styled);
  assert.equal(chat.model, "style"); // as vLLM answers for a LoRA
});
