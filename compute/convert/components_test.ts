import assert from "node:assert/strict";
import { readFloat32, type Tensor } from "../backends/backend.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { parseSafetensors, tensorToFloat32 } from "../lora/safetensors.ts";
import { convertComponent, readComponentFolder } from "./components.ts";

const DATA = new URL("../../fixtures/reference/data/", import.meta.url).pathname;
const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/sd15.manifest.json`));
const reference =
  parseSafetensors(await Deno.readFile(`${DATA}/sd15.reference.safetensors`)).tensors;
const ref = (name: string) => tensorToFloat32(reference.get(name)!);
const shape = (name: string) => reference.get(name)!.shape;

/** Largest |a − b| relative to the largest |b|. */
export function relativeError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Runs `folder/model.onnx` of converted `files` on onnxruntime-node. */
async function run(files: Map<string, Uint8Array>, folder: string, feeds: Record<string, Tensor>) {
  const backend = createNodeBackend(1);
  const data = files.get(`${folder}/model.onnx_data`);
  const session = await backend.createSession({
    bytes: files.get(`${folder}/model.onnx`)!,
    externalData: data ? new Map([["model.onnx_data", data]]) : undefined,
  });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(
      await Promise.all(Object.entries(out).map(async ([k, t]) => [k, await readFloat32(t)])),
    ) as Record<string, Float32Array>;
  } finally {
    await session.release();
  }
}

const backend = createNodeBackend(1);
const f32 = (name: string) => backend.tensor("float32", ref(name), shape(name));

Deno.test("converted SD 1.x components compute diffusers' own outputs within 1e-4", async (t) => {
  const convert = async (component: string) => {
    const { config, weights } = await readComponentFolder(`${DATA}/sd15/${component}`);
    return convertComponent(component, config, weights);
  };
  await t.step("text_encoder", async () => {
    const files = await convert("text_encoder");
    const ids = manifest.components.text_encoder.inputs.input_ids;
    const out = await run(files, "text_encoder", {
      input_ids: backend.tensor("int64", BigInt64Array.from(ids.value.flat(), BigInt), ids.shape),
    });
    const err = relativeError(out.last_hidden_state, ref("text_encoder.last_hidden_state"));
    console.log(`text_encoder: max relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `${err}`);
  });
  await t.step("unet", async () => {
    const files = await convert("unet");
    const out = await run(files, "unet", {
      sample: f32("unet.sample"),
      timestep: backend.tensor(
        "float32",
        Float32Array.of(manifest.components.unet.inputs.timestep.value),
        [1],
      ),
      encoder_hidden_states: f32("unet.encoder_hidden_states"),
    });
    const err = relativeError(out.out_sample, ref("unet.out_sample"));
    console.log(`unet: max relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `${err}`);
  });
  await t.step("vae_decoder and vae_encoder", async () => {
    const files = await convert("vae");
    const dec = await run(files, "vae_decoder", {
      latent_sample: f32("vae_decoder.latent_sample"),
    });
    const decErr = relativeError(dec.sample, ref("vae_decoder.sample"));
    const enc = await run(files, "vae_encoder", { sample: f32("vae_encoder.sample") });
    const params = enc.latent_parameters, half = params.length / 2;
    const mean = params.slice(0, half);
    const std = params.slice(half).map((v) => Math.exp(0.5 * Math.min(20, Math.max(-30, v))));
    const encErr = Math.max(
      relativeError(mean, ref("vae_encoder.latent_mean")),
      relativeError(std, ref("vae_encoder.latent_std")),
    );
    console.log(
      `vae_decoder: max relative error ${decErr.toExponential(2)}; vae_encoder: ${
        encErr.toExponential(2)
      }`,
    );
    assert.ok(decErr < 1e-4, `${decErr}`);
    assert.ok(encErr < 1e-4, `${encErr}`);
  });
});
