import assert from "node:assert/strict";
import { webGpuForTests } from "../backends/webgpu_for_tests.ts";
import { InvalidInputError, ModelLoadError } from "../errors.ts";
import { GraphBuilder } from "../graph/onnx_builder.ts";
import { loadPipeline } from "../load.ts";
import { detectPublishedLayout } from "./published_layouts.ts";

const fixture = (name: string) =>
  new URL(`../../fixtures/models/${name}`, import.meta.url).pathname;

Deno.test("the published SD-Turbo layouts are told apart by their files", async () => {
  assert.equal(
    (await detectPublishedLayout(fixture("sd-turbo-webnn-tiny")))?.layout.repo,
    "microsoft/sd-turbo-webnn",
  );
  assert.equal(
    (await detectPublishedLayout(fixture("sd-turbo-ort-web-tiny")))?.layout.repo,
    "schmuell/sd-turbo-ort-web",
  );
  const sdxl = await detectPublishedLayout(fixture("sdxl-turbo-webnn-tiny"));
  assert.equal(sdxl?.layout.repo, "webnn/sdxl-turbo");
  assert.equal(sdxl?.variant, "q4f16");
  assert.equal(sdxl?.graphs.unet, "onnx/unet_model_q4f16.onnx");
  // A model_index.json beside the WebNN file names changes nothing.
  const withIndex = await Deno.makeTempDir();
  try {
    for (const entry of Deno.readDirSync(fixture("sd-turbo-webnn-tiny"))) {
      await Deno.symlink(
        `${fixture("sd-turbo-webnn-tiny")}/${entry.name}`,
        `${withIndex}/${entry.name}`,
      );
    }
    await Deno.writeTextFile(
      `${withIndex}/model_index.json`,
      '{"_class_name": "StableDiffusionPipeline"}',
    );
    assert.equal((await detectPublishedLayout(withIndex))?.layout.repo, "microsoft/sd-turbo-webnn");
  } finally {
    await Deno.remove(withIndex, { recursive: true });
  }
  // Diffusers folders (ours, onnxruntime/sd-turbo) are served as they are.
  assert.equal(await detectPublishedLayout(fixture("sd-turbo-ort-cuda-tiny")), undefined);
  assert.equal(await detectPublishedLayout(fixture("sd-turbo-tiny")), undefined);
});

const REPLICAS = [
  "sd-turbo-webnn-tiny",
  "sd-turbo-ort-web-tiny",
  "sd-turbo-ort-cuda-tiny",
  "sdxl-turbo-webnn-tiny",
];

for (const name of REPLICAS) {
  Deno.test(`${name}: loads on cpu with the Turbo defaults and draws a seeded image`, async () => {
    const pipeline = await loadPipeline(fixture(name), { device: "cpu" });
    try {
      const xl = name.startsWith("sdxl");
      assert.equal(pipeline.family, xl ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline");
      assert.deepEqual(pipeline.defaults, {
        width: 512,
        height: 512,
        steps: 1,
        guidanceScale: 0,
      });
      if (name === "sd-turbo-ort-cuda-tiny") {
        // The CPU provider has no NhwcConv: the graph loaded because it was rewritten.
        const unet = await Deno.readTextFile(`${fixture(name)}/unet/model.onnx`);
        assert.ok(unet.includes("NhwcConv"));
      }
      const a = await pipeline.generate({ prompt: "a red cube", seed: 1 });
      const b = await pipeline.generate({ prompt: "a red cube", seed: 1 });
      const c = await pipeline.generate({ prompt: "a red cube", seed: 2 });
      assert.equal(a.images[0].data.length, 512 * 512 * 3);
      assert.deepEqual(a.images[0].data, b.images[0].data);
      assert.notDeepEqual(a.images[0].data, c.images[0].data);
      const distinct = new Set(a.images[0].data.subarray(0, 3 * 4096));
      assert.ok(distinct.size > 16, `a flat image: ${distinct.size} values`);
    } finally {
      await pipeline.release();
    }
  });
}

const webgpu = await webGpuForTests();

for (const name of REPLICAS) {
  Deno.test({
    name: `${name}: WebGPU draws cpu's image within 3/255${
      webgpu.ignored ? ` (ignored: ${webgpu.ignored})` : ""
    }`,
    ignore: webgpu.ignored !== undefined,
    async fn() {
      const images: Uint8Array[] = [];
      for (const device of ["cpu", "webgpu"] as const) {
        const pipeline = await loadPipeline(fixture(name), { device });
        try {
          images.push((await pipeline.generate({ prompt: "a red cube", seed: 5 })).images[0].data);
        } finally {
          await pipeline.release();
        }
      }
      const worst = images[0].reduce((m, v, i) => Math.max(m, Math.abs(v - images[1][i])), 0);
      assert.ok(worst <= 3, `cpu↔webgpu ${worst}/255`);
    },
  });
}

Deno.test("sd-turbo-webnn-tiny: requests its static graphs cannot take are refused naming the fixed size", async () => {
  const pipeline = await loadPipeline(fixture("sd-turbo-webnn-tiny"), { device: "cpu" });
  try {
    const refused = (
      options: Parameters<typeof pipeline.batchKey>[0],
      param: string,
      text: RegExp,
    ) =>
      assert.throws(
        () => pipeline.batchKey(options),
        (e: unknown) => e instanceof InvalidInputError && e.param === param && text.test(e.message),
      );
    refused({ prompt: "x", width: 256, height: 256 }, "size", /512x512.*sample \[1,4,64,64\]/);
    refused({ prompt: "x", n: 2 }, "n", /at most 1.*\[1,4,64,64\]/);
    refused({ prompt: "x", guidanceScale: 2 }, "guidance_scale", /takes? 1/);
    // Two acceptable requests never share a batch.
    assert.notEqual(pipeline.batchKey({ prompt: "x" }), pipeline.batchKey({ prompt: "x" }));
  } finally {
    await pipeline.release();
  }
});

Deno.test("sdxl-turbo-webnn-tiny: a folder holding two variants serves the asked one, or says which default it serves", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/onnx`);
    for (const entry of Deno.readDirSync(`${fixture("sdxl-turbo-webnn-tiny")}/onnx`)) {
      const path = `${fixture("sdxl-turbo-webnn-tiny")}/onnx/${entry.name}`;
      await Deno.symlink(path, `${dir}/onnx/${entry.name}`);
      if (entry.name.endsWith("_q4f16.onnx")) {
        await Deno.symlink(path, `${dir}/onnx/${entry.name.replace("_q4f16", "_qdq_q4f16")}`);
      }
    }
    const notices: string[] = [];
    const pipeline = await loadPipeline(dir, { device: "cpu", onNotice: (m) => notices.push(m) });
    await pipeline.release();
    assert.equal(notices.length, 1);
    assert.match(
      notices[0],
      /webnn\/sdxl-turbo's variants q4f16, qdq_q4f16: serving q4f16, the default/,
    );
    const asked = await detectPublishedLayout(dir, "qdq_q4f16");
    assert.equal(asked?.graphs.unet, "onnx/unet_model_qdq_q4f16.onnx");
    await assert.rejects(
      loadPipeline(dir, { device: "cpu", variant: "fp32" }),
      (e: unknown) =>
        e instanceof ModelLoadError &&
        /holds no variant 'fp32'.*it has q4f16, qdq_q4f16/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sd-turbo-ort-web-tiny: dynamic graphs take any size, n and guidance", async () => {
  const pipeline = await loadPipeline(fixture("sd-turbo-ort-web-tiny"), { device: "cpu" });
  try {
    const r = await pipeline.generate({
      prompt: "x",
      width: 128,
      height: 64,
      n: 2,
      guidanceScale: 2,
      seed: 3,
    });
    assert.equal(r.images.length, 2);
    assert.equal(r.images[0].data.length, 128 * 64 * 3);
  } finally {
    await pipeline.release();
  }
});

/** A copy of the CUDA replica whose UNet also uses `op` (com.microsoft). */
async function withCudaOp(op: string): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/unet`);
  for (const entry of Deno.readDirSync(fixture("sd-turbo-ort-cuda-tiny"))) {
    if (entry.name !== "unet") {
      await Deno.symlink(
        `${fixture("sd-turbo-ort-cuda-tiny")}/${entry.name}`,
        `${dir}/${entry.name}`,
      );
    }
  }
  const g = new GraphBuilder("unet", 1);
  g.input("sample", "float16", ["b", 4, "h", "w"]);
  g.input("timestep", "float16", ["b"]);
  g.input("encoder_hidden_states", "float16", ["b", "s", 32]);
  g.op(
    op,
    ["sample", g.weight([4], 1), g.weight([4], 0)],
    {
      epsilon: 1e-5,
      groups: 1,
      activation: 0,
    },
    "out_sample",
    undefined,
    "com.microsoft",
  );
  g.output("out_sample", "float16", ["b", 4, "h", "w"]);
  await Deno.writeFile(`${dir}/unet/model.onnx`, g.serialize().model);
  return dir;
}

Deno.test("a CUDA-only operator other than NhwcConv is refused at load, naming it and its provider", async () => {
  const dir = await withCudaOp("GroupNorm");
  try {
    await assert.rejects(
      loadPipeline(dir, { device: "cpu" }),
      (e: unknown) =>
        e instanceof ModelLoadError &&
        /unet\/model\.onnx on cpu: its operator GroupNorm .*CUDA execution provider/.test(
          e.message,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The Z-Image replica with the tokenizer a served folder must add (the export has none). */
async function zImageWithTokenizer(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.symlink(`${fixture("z-image-turbo-webnn-tiny")}/onnx`, `${dir}/onnx`);
  await Deno.symlink(`${fixture("z-image-turbo-tiny")}/tokenizer`, `${dir}/tokenizer`);
  return dir;
}

Deno.test("z-image-turbo-webnn-tiny: refused without a tokenizer, naming what to add", async () => {
  const detected = await detectPublishedLayout(fixture("z-image-turbo-webnn-tiny"));
  assert.equal(detected?.layout.repo, "webnn/Z-Image-Turbo");
  assert.equal(detected?.graphs.transformer, "onnx/transformer_model_q4f16.onnx");
  await assert.rejects(
    loadPipeline(fixture("z-image-turbo-webnn-tiny"), { device: "cpu" }),
    (e: unknown) =>
      e instanceof ModelLoadError &&
      /has no tokenizer\/; add Qwen3's tokenizer\.json/.test(e.message),
  );
});

Deno.test("z-image-turbo-webnn-tiny: with a tokenizer, serves batches through a transformer without a batch axis, on cpu and WebGPU alike", async () => {
  const dir = await zImageWithTokenizer();
  try {
    const images: Uint8Array[] = [];
    for (const device of webgpu.ignored ? ["cpu"] as const : ["cpu", "webgpu"] as const) {
      const pipeline = await loadPipeline(dir, { device });
      try {
        assert.equal(pipeline.family, "ZImagePipeline");
        const options = { prompt: "a red cube", width: 64, height: 64, steps: 2, seed: 4 };
        const two = await pipeline.generate({ ...options, n: 2 });
        const one = await pipeline.generate(options);
        // Each image of a batch is the one drawn alone with its seed (the rows run one by one).
        assert.deepEqual(two.images[0].data, one.images[0].data);
        assert.notDeepEqual(two.images[0].data, two.images[1].data);
        images.push(one.images[0].data);
      } finally {
        await pipeline.release();
      }
    }
    if (images.length === 2) {
      const worst = images[0].reduce((m, v, i) => Math.max(m, Math.abs(v - images[1][i])), 0);
      assert.ok(worst <= 3, `cpu↔webgpu ${worst}/255`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
