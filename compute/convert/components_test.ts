import assert from "node:assert/strict";
import pkg from "onnx-proto";
import { readFloat32, type Tensor } from "../backends/backend.ts";
import { createNodeBackend } from "../backends/onnxruntime_node.ts";
import { parseSafetensors, tensorToFloat32 } from "../lora/safetensors.ts";
import { convertComponent, readComponentFolder } from "./components.ts";
import { decodeModel } from "../graph/model_bytes.ts";

const DATA = new URL("../../fixtures/reference/data/", import.meta.url).pathname;
const backend = createNodeBackend(1);

/** Largest |a − b| relative to the largest |b|. */
function relativeError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Runs `folder/model.onnx` of converted `files` on onnxruntime-node (as the server opens it). */
async function run(files: Map<string, Uint8Array>, folder: string, feeds: Record<string, Tensor>) {
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

/** One family's reference tensors and its folder's components converted. */
async function family(name: string) {
  const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/${name}.manifest.json`));
  const tensors = parseSafetensors(await Deno.readFile(`${DATA}/${name}.reference.safetensors`))
    .tensors;
  const ref = (key: string) => tensorToFloat32(tensors.get(key)!);
  return {
    manifest,
    ref,
    input: (key: string) => backend.tensor("float32", ref(key), tensors.get(key)!.shape),
    convert: async (component: string) => {
      const { config, weights } = await readComponentFolder(`${DATA}/${name}/${component}`);
      return convertComponent(component, config, weights);
    },
  };
}

/** Checks the VAE's decoder and encoder; returns their errors. */
async function checkVae(f: Awaited<ReturnType<typeof family>>) {
  const files = await f.convert("vae");
  const dec = await run(files, "vae_decoder", {
    latent_sample: f.input("vae_decoder.latent_sample"),
  });
  const decErr = relativeError(dec.sample, f.ref("vae_decoder.sample"));
  const enc = await run(files, "vae_encoder", { sample: f.input("vae_encoder.sample") });
  // diffusers' DiagonalGaussianDistribution: mean, and std = exp(½·clamp(logvar, −30, 20)).
  const params = enc.latent_parameters, half = params.length / 2;
  const std = params.slice(half).map((v) => Math.exp(0.5 * Math.min(20, Math.max(-30, v))));
  const encErr = Math.max(
    relativeError(params.slice(0, half), f.ref("vae_encoder.latent_mean")),
    relativeError(std, f.ref("vae_encoder.latent_std")),
  );
  assert.ok(decErr < 1e-4, `vae_decoder: ${decErr}`);
  assert.ok(encErr < 1e-4, `vae_encoder: ${encErr}`);
  return { decErr, encErr };
}

const timestep = (
  manifest: { components: { unet: { inputs: { timestep: { value: number } } } } },
) =>
  backend.tensor("float32", Float32Array.of(manifest.components.unet.inputs.timestep.value), [1]);

/** The manifest's `input_ids` of a text encoder, as a tensor. */
const inputIds = (f: Awaited<ReturnType<typeof family>>, component: string) => {
  const ids = f.manifest.components[component].inputs.input_ids;
  return backend.tensor("int64", BigInt64Array.from(ids.value.flat(), BigInt), ids.shape);
};

Deno.test("converted SD 1.x components compute diffusers' own outputs within 1e-4", async (t) => {
  const f = await family("sd15");
  await t.step("text_encoder", async () => {
    const out = await run(await f.convert("text_encoder"), "text_encoder", {
      input_ids: inputIds(f, "text_encoder"),
    });
    const err = relativeError(out.last_hidden_state, f.ref("text_encoder.last_hidden_state"));
    console.log(`text_encoder: max relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `${err}`);
  });
  await t.step("unet", async () => {
    const out = await run(await f.convert("unet"), "unet", {
      sample: f.input("unet.sample"),
      timestep: timestep(f.manifest),
      encoder_hidden_states: f.input("unet.encoder_hidden_states"),
    });
    const err = relativeError(out.out_sample, f.ref("unet.out_sample"));
    console.log(`unet: max relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `${err}`);
  });
  await t.step("vae_decoder and vae_encoder", async () => {
    const { decErr, encErr } = await checkVae(f);
    console.log(
      `vae_decoder: max relative error ${decErr.toExponential(2)}; vae_encoder: ${
        encErr.toExponential(2)
      }`,
    );
  });
});

Deno.test("converted SDXL components (CLIP-L and a gelu CLIP with projection; text_time UNet with linear projections, per-level heads and depths; VAE) match diffusers within 1e-4", async (t) => {
  const f = await family("sdxl");
  for (const component of ["text_encoder", "text_encoder_2"]) {
    await t.step(component, async () => {
      const { config, weights } = await readComponentFolder(`${DATA}/sdxl/${component}`);
      const files = convertComponent(component, config, weights, component);
      const out = await run(files, component, { input_ids: inputIds(f, component) });
      // `hidden_states[-2]`: the output of the last layer but one.
      const layers = Number(config.num_hidden_layers);
      let err = relativeError(
        out[`hidden_states.${layers - 1}`],
        f.ref(`${component}.penultimate_hidden_state`),
      );
      if (component === "text_encoder_2") {
        err = Math.max(err, relativeError(out.text_embeds, f.ref("text_encoder_2.text_embeds")));
      }
      console.log(`sdxl ${component}: max relative error ${err.toExponential(2)}`);
      assert.ok(err < 1e-4, `${err}`);
    });
  }
  await t.step("unet", async () => {
    const out = await run(await f.convert("unet"), "unet", {
      sample: f.input("unet.sample"),
      timestep: timestep(f.manifest),
      encoder_hidden_states: f.input("unet.encoder_hidden_states"),
      text_embeds: f.input("unet.text_embeds"),
      time_ids: f.input("unet.time_ids"),
    });
    const err = relativeError(out.out_sample, f.ref("unet.out_sample"));
    console.log(`sdxl unet: max relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-4, `${err}`);
  });
  await t.step("vae_decoder and vae_encoder", async () => {
    const { decErr, encErr } = await checkVae(f);
    console.log(
      `sdxl vae_decoder: max relative error ${decErr.toExponential(2)}; vae_encoder: ${
        encErr.toExponential(2)
      }`,
    );
  });
});

Deno.test("converted Z-Image components (S3-DiT with refiners, 3-axis RoPE and adaLN; Qwen3 text encoder's hidden_states[-2]; 16-channel VAE) match diffusers within 1e-4", async (t) => {
  const f = await family("zimage");
  await t.step("text_encoder", async () => {
    const { inputs } = f.manifest.components.text_encoder;
    const ids = (x: { value: number[][]; shape: number[] }) =>
      backend.tensor("int64", BigInt64Array.from(x.value.flat(), BigInt), x.shape);
    const padded = await run(await f.convert("text_encoder"), "text_encoder", {
      input_ids: ids(inputs.input_ids),
      attention_mask: ids(inputs.attention_mask),
    });
    const reference = f.ref("text_encoder.hidden_states_-2");
    // Padded to 512 as diffusers tokenizes, every row (the padding rows too) is diffusers'.
    const err = relativeError(padded.encoder_hidden_state, reference);
    // Unpadded, as our pipeline runs it: the real rows.
    const real = inputs.attention_mask.value[0].filter((m: number) => m === 1).length;
    const width = reference.length / 512;
    const alone = await run(await f.convert("text_encoder"), "text_encoder", {
      input_ids: ids({ value: [inputs.input_ids.value[0].slice(0, real)], shape: [1, real] }),
      attention_mask: ids({ value: [Array(real).fill(1)], shape: [1, real] }),
    });
    const errAlone = relativeError(
      alone.encoder_hidden_state,
      reference.slice(0, real * width),
    );
    console.log(
      `zimage text_encoder: max relative error ${err.toExponential(2)} (padded to 512), ${
        errAlone.toExponential(2)
      } (the ${real} real tokens alone)`,
    );
    assert.ok(err < 1e-4, `${err}`);
    assert.ok(errAlone < 1e-4, `${errAlone}`);
  });
  await t.step("transformer", async () => {
    const x = f.ref("transformer.x");
    const cap = f.ref("transformer.cap_feats");
    const out = await run(await f.convert("transformer"), "transformer", {
      hidden_states: backend.tensor("float32", x, [1, 16, 1, 8, 8]),
      timestep: f.input("transformer.t"),
      encoder_hidden_states: backend.tensor("float32", cap, [1, cap.length / 32, 32]),
    });
    const err = relativeError(out.unified_results, f.ref("transformer.out"));
    // The shapes of real use: a batch of two at different t, nothing padded.
    const batch = await run(await f.convert("transformer"), "transformer", {
      hidden_states: f.input("transformer_batch.x"),
      timestep: f.input("transformer_batch.t"),
      encoder_hidden_states: f.input("transformer_batch.cap_feats"),
    });
    const errBatch = relativeError(batch.unified_results, f.ref("transformer_batch.out"));
    console.log(
      `zimage transformer: max relative error ${err.toExponential(2)} (padded image and caption), ${
        errBatch.toExponential(2)
      } (a batch of two, unpadded)`,
    );
    assert.ok(err < 1e-4, `${err}`);
    assert.ok(errBatch < 1e-4, `${errBatch}`);
  });
  await t.step("vae_decoder and vae_encoder", async () => {
    const { decErr, encErr } = await checkVae(f);
    console.log(
      `zimage vae_decoder: max relative error ${decErr.toExponential(2)}; vae_encoder: ${
        encErr.toExponential(2)
      }`,
    );
  });
});

Deno.test("converted Qwen-Image transformer (dual-stream MMDiT, centred 3-axis RoPE, adaLN, masked text) matches diffusers within 1e-4", async () => {
  const f = await family("qwenimage");
  const { inputs, img_shapes } = f.manifest.components.transformer;
  const mask = inputs.encoder_hidden_states_mask;
  const [, h, w] = img_shapes[0][0];
  const out = await run(await f.convert("transformer"), "transformer", {
    hidden_states: f.input("transformer.hidden_states"),
    timestep: f.input("transformer.timestep"),
    encoder_hidden_states: f.input("transformer.encoder_hidden_states"),
    encoder_hidden_states_mask: backend.tensor(
      "int64",
      BigInt64Array.from(mask.value.flat(), BigInt),
      mask.shape,
    ),
    img_height: backend.tensor("int64", BigInt64Array.of(BigInt(h)), []),
    img_width: backend.tensor("int64", BigInt64Array.of(BigInt(w)), []),
  });
  const err = relativeError(out.out_hidden_states, f.ref("transformer.out"));
  console.log(
    `qwenimage transformer: max relative error ${
      err.toExponential(2)
    } (a batch of two, ${h}×${w} tokens, one text row masked)`,
  );
  assert.ok(err < 1e-4, `${err}`);
});

Deno.test("converted Qwen-Image VAE (causal 3-D convs on one frame, RMS norms, mid attention) matches diffusers within 1e-4", async () => {
  const f = await family("qwenimage");
  const files = await f.convert("vae");
  const dec = await run(files, "vae_decoder", {
    latent_sample: f.input("vae_decoder.latent_sample"),
  });
  const decErr = relativeError(dec.sample, f.ref("vae_decoder.sample"));
  const enc = await run(files, "vae_encoder", { sample: f.input("vae_encoder.sample") });
  // diffusers' DiagonalGaussianDistribution: mean, and std = exp(½·clamp(logvar, −30, 20)).
  const params = enc.latent_parameters, half = params.length / 2;
  const std = params.slice(half).map((v) => Math.exp(0.5 * Math.min(20, Math.max(-30, v))));
  const encErr = Math.max(
    relativeError(params.slice(0, half), f.ref("vae_encoder.latent_mean")),
    relativeError(std, f.ref("vae_encoder.latent_std")),
  );
  console.log(
    `qwenimage vae_decoder: max relative error ${decErr.toExponential(2)}; vae_encoder: ${
      encErr.toExponential(2)
    }`,
  );
  assert.ok(decErr < 1e-4, `vae_decoder: ${decErr}`);
  assert.ok(encErr < 1e-4, `vae_encoder: ${encErr}`);
});

Deno.test("converted Qwen-Image text encoder (Qwen2.5-VL language model's hidden_states[-1], q/k/v biases, grouped-query attention, padded batch) matches transformers within 1e-4", async () => {
  const f = await family("qwenimage");
  const { inputs } = f.manifest.components.text_encoder;
  const ids = (x: { value: number[][]; shape: number[] }) =>
    backend.tensor("int64", BigInt64Array.from(x.value.flat(), BigInt), x.shape);
  const files = await f.convert("text_encoder");
  const out = await run(files, "text_encoder", {
    input_ids: ids(inputs.input_ids),
    attention_mask: ids(inputs.attention_mask),
  });
  const reference = f.ref("text_encoder.hidden_states_-1");
  // The real rows of each prompt (padding is on the right), which the pipeline keeps.
  const [length] = inputs.input_ids.shape.slice(1);
  const width = reference.length / (2 * length);
  const real = (values: Float32Array) =>
    Float32Array.from(
      inputs.attention_mask.value.flatMap((row: number[], b: number) =>
        row.flatMap((m, t) =>
          m ? [...values.subarray((b * length + t) * width, (b * length + t + 1) * width)] : []
        )
      ),
    );
  const err = relativeError(real(out.last_hidden_state), real(reference));
  // The empty prompt alone, unpadded, as diffusers encodes it.
  const alone = inputs.attention_mask.value[1].filter((m: number) => m === 1).length;
  const single = await run(files, "text_encoder", {
    input_ids: ids({ value: [inputs.input_ids.value[1].slice(0, alone)], shape: [1, alone] }),
    attention_mask: ids({ value: [Array(alone).fill(1)], shape: [1, alone] }),
  });
  const errAlone = relativeError(
    single.last_hidden_state,
    reference.slice(length * width, (length + alone) * width),
  );
  console.log(
    `qwenimage text_encoder: max relative error ${
      err.toExponential(2)
    } (real rows of a padded batch of two), ${
      errAlone.toExponential(2)
    } (the shorter prompt alone)`,
  );
  assert.ok(err < 1e-4, `${err}`);
  assert.ok(errAlone < 1e-4, `${errAlone}`);
});

Deno.test("Qwen-Image variants the converter does not build are refused with the field named", async () => {
  const { config, weights } = await readComponentFolder(
    `${DATA}/qwenimage/transformer`,
  );
  for (
    const [key, value] of [["zero_cond_t", true], ["guidance_embeds", true], ["patch_size", 1]]
  ) {
    assert.throws(
      () => convertComponent("transformer", { ...config, [key as string]: value }, weights),
      new RegExp(`transformer: ${key} = ${value} is not supported by the converter`),
    );
  }
});

Deno.test("a q4 UNet reads every conv kernel as 4-bit blocks through DequantizeLinear; its VAE's stay float32", async () => {
  for (
    const [component, folder, quantized] of [["unet", "unet", true], [
      "vae",
      "vae_decoder",
      false,
    ]] as const
  ) {
    const { config, weights } = await readComponentFolder(`${DATA}sd15/${component}`);
    const files = convertComponent(component, config, weights, "text_encoder", "q4");
    const model = decodeModel(files.get(`${folder}/model.onnx`)!)!;
    const producers = new Map(model.graph!.node!.map((n) => [n.output![0], n]));
    const types = new Map(model.graph!.initializer!.map((t) => [t.name!, t.dataType]));
    const kernels = model.graph!.node!.filter((n) => n.opType === "Conv").map((n) => {
      const reshape = producers.get(n.input![1]);
      const dq = reshape?.opType === "Reshape" ? producers.get(reshape.input![0]) : undefined;
      return dq?.opType === "DequantizeLinear" ? types.get(dq.input![0]) : types.get(n.input![1]);
    });
    assert.ok(kernels.length > 10, `${folder}: ${kernels.length} convs`);
    const UINT4 = 21, { FLOAT } = pkg.onnx.TensorProto.DataType;
    assert.ok(kernels.every((t) => t === (quantized ? UINT4 : FLOAT)), `${folder}: ${kernels}`);
  }
});
