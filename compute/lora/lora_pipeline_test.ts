import assert from "node:assert/strict";
import { join } from "node:path";
import { type FixtureLora, type MergedLora } from "../../fixtures/builder/lora.ts";
import { qwenImageFixtureFiles, qwenImageFixtureLora } from "../../fixtures/builder/qwen_image.ts";
import {
  SD15_TINY,
  SD_TURBO_TINY,
  sdFixtureFiles,
  sdFixtureLora,
} from "../../fixtures/builder/stable_diffusion.ts";
import { zImageFixtureFiles, zImageFixtureLora } from "../../fixtures/builder/z_image.ts";
import type { DeviceName } from "../backends/backend.ts";
import { webGpuForTests } from "../backends/webgpu_for_tests.ts";
import { loadPipeline } from "../load.ts";
import type { GenerateOptions, LoraSpec, RgbImage } from "../pipelines/pipeline.ts";
import { adapterFiles } from "./files.ts";
import { LoraError } from "./adapter.ts";

const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;

interface Case {
  name: string;
  lora: () => FixtureLora;
  files: (merged?: MergedLora) => Map<string, Uint8Array>;
  options: Partial<GenerateOptions>;
}

const CASES: Case[] = [
  {
    name: "sd15-tiny", // UNet weights in model.onnx_data, CFG
    lora: () => sdFixtureLora(SD15_TINY),
    files: (m) => sdFixtureFiles(SD15_TINY, m),
    options: { width: 64, height: 64, steps: 3, guidanceScale: 5 },
  },
  {
    name: "sd-turbo-tiny", // float16 graph IO
    lora: () => sdFixtureLora(SD_TURBO_TINY),
    files: (m) => sdFixtureFiles(SD_TURBO_TINY, m),
    options: { width: 64, height: 64, steps: 2 },
  },
  {
    name: "qwen-image-tiny", // transformer weights in model.onnx_data
    lora: () => qwenImageFixtureLora(),
    files: (m) => qwenImageFixtureFiles(undefined, m),
    options: { width: 64, height: 64, steps: 2 },
  },
  {
    name: "z-image-turbo-tiny",
    lora: () => zImageFixtureLora(),
    files: (m) => zImageFixtureFiles(undefined, m),
    options: { width: 64, height: 64, steps: 2 },
  },
];

async function spec(path: string, scale: number, id = path): Promise<LoraSpec> {
  return { id, files: await adapterFiles(join(FIXTURES, path)), scale };
}

async function writeFolder(files: Map<string, Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "denoise-merged-" });
  for (const [path, bytes] of files) {
    await Deno.mkdir(join(dir, path, ".."), { recursive: true });
    await Deno.writeFile(join(dir, path), bytes);
  }
  return dir;
}

const same = (a: RgbImage[], b: RgbImage[]) =>
  a.length === b.length && a.every((img, i) => img.data.every((v, k) => v === b[i].data[k]));

function maxDiff(a: RgbImage[], b: RgbImage[]): number {
  let max = 0;
  a.forEach((img, i) =>
    img.data.forEach((v, k) => max = Math.max(max, Math.abs(v - b[i].data[k])))
  );
  return max;
}

for (const c of CASES) {
  Deno.test(`LoRA on ${c.name}: formats agree, scale 0 is the base, runtime merge = builder pre-merge`, async () => {
    const pipeline = await loadPipeline(join(FIXTURES, "models", c.name), { device: "cpu" });
    const run = (lora?: LoraSpec[]) =>
      pipeline.generate({ prompt: "a red cube", seed: 7, ...c.options, lora }).then((r) =>
        r.images
      );
    try {
      const base = await run();
      const diffusers = await run([await spec(`loras/${c.name}/diffusers.safetensors`, 0.8)]);
      const kohya = await run([await spec(`loras/${c.name}/kohya.safetensors`, 0.8)]);
      const peft = await run([await spec(`loras/${c.name}/peft`, 0.8)]);
      assert.ok(!same(base, diffusers), "the adapter changes the image");
      assert.ok(same(diffusers, kohya), "diffusers and Kohya files of one adapter agree");
      assert.ok(same(await run([await spec(`loras/${c.name}/peft`, 0)]), base), "scale 0 = base");

      // The builder merges in float64 with its own code; the pipeline patches the graph bytes.
      const lora = c.lora();
      const denoiserOnly = {
        ...lora,
        layers: lora.layers.filter((l) => l.component !== "text_encoder"),
      };
      for (
        const [merged, got] of [[{ lora, scale: 0.8 }, diffusers], [{
          lora: denoiserOnly,
          scale: 0.8,
        }, peft]] as const
      ) {
        const dir = await writeFolder(c.files(merged));
        const premerged = await loadPipeline(dir, { device: "cpu" });
        const expected =
          (await premerged.generate({ prompt: "a red cube", seed: 7, ...c.options })).images;
        await premerged.release();
        await Deno.remove(dir, { recursive: true });
        assert.ok(
          maxDiff(got, expected) <= 1,
          `pre-merged vs runtime: max |Δ| ${maxDiff(got, expected)}`,
        );
      }
    } finally {
      await pipeline.release();
    }
  });
}

Deno.test("two adapters commute, and a cached variant is reused", async () => {
  const pipeline = await loadPipeline(join(FIXTURES, "models/sd15-tiny"), { device: "cpu" });
  try {
    const a = await spec("loras/sd15-tiny/peft", 1.0);
    const b = await spec("loras/sd15-tiny/kohya.safetensors", -0.5);
    const options = { prompt: "a blue ball", seed: 3, width: 64, height: 64, steps: 2 };
    const ab = await pipeline.generate({ ...options, lora: [a, b] });
    assert.ok(ab.timings.loraMs! > 0);
    const ba = await pipeline.generate({ ...options, lora: [b, a] });
    assert.ok(same(ab.images, ba.images));
    assert.equal(ba.timings.loraMs! < ab.timings.loraMs!, true, "the second call reuses the merge");
    assert.equal(pipeline.cached.variants, 1);
  } finally {
    await pipeline.release();
  }
});

Deno.test("requests with and without an adapter, run together, each get their own image", async () => {
  const pipeline = await loadPipeline(join(FIXTURES, "models/sd15-tiny"), { device: "cpu" });
  try {
    const lora = [await spec("loras/sd15-tiny/peft", 1)];
    const options = { prompt: "a green star", seed: 11, width: 64, height: 64, steps: 2 };
    const aloneBase = await pipeline.generate(options);
    const aloneLora = await pipeline.generate({ ...options, lora });
    assert.notEqual(pipeline.batchKey(options), pipeline.batchKey({ ...options, lora }));
    const [base, adapted, base2] = await Promise.all([
      pipeline.generate(options),
      pipeline.generate({ ...options, lora }),
      pipeline.generate(options),
    ]);
    assert.ok(same(base.images, aloneBase.images));
    assert.ok(same(base2.images, aloneBase.images));
    assert.ok(same(adapted.images, aloneLora.images));
  } finally {
    await pipeline.release();
  }
});

Deno.test("the cache keeps at most maxVariants merged variants", async () => {
  const pipeline = await loadPipeline(join(FIXTURES, "models/sd15-tiny"), {
    device: "cpu",
    lora: { maxVariants: 1 },
  });
  try {
    const options = { prompt: "x", seed: 1, width: 64, height: 64, steps: 1 };
    for (const scale of [1, 0.5, 0.25]) {
      await pipeline.generate({ ...options, lora: [await spec("loras/sd15-tiny/peft", scale)] });
      assert.equal(pipeline.cached.variants, 1);
    }
    assert.ok(pipeline.cached.bytes > 0);
  } finally {
    await pipeline.release();
  }
});

Deno.test("an adapter for another model is a LoraError naming its keys, and the pipeline goes on", async () => {
  const pipeline = await loadPipeline(join(FIXTURES, "models/sd15-tiny"), { device: "cpu" });
  try {
    const options = { prompt: "x", seed: 1, width: 64, height: 64, steps: 1 };
    await assert.rejects(
      pipeline.generate({ ...options, lora: [await spec("loras/qwen-image-tiny/peft", 1)] }),
      (e: Error) =>
        e instanceof LoraError && /3 of 3 LoRA layers match no weight/.test(e.message) &&
        /'txt_in'|'img_in'|'proj_out'/.test(e.message),
    );
    await assert.rejects(
      pipeline.generate({ ...options, lora: [await spec("loras/sd15-tiny/peft", Number.NaN)] }),
      /LoRA scale must be a finite number/,
    );
    assert.equal((await pipeline.generate(options)).images.length, 1);
  } finally {
    await pipeline.release();
  }
});

Deno.test("LoRA on a published export whose graphs name no module is refused with why, and the pipeline goes on", async () => {
  // The replica of microsoft/sd-turbo-webnn: an optimized export, every node and weight renamed.
  const pipeline = await loadPipeline(join(FIXTURES, "models/sd-turbo-webnn-tiny"), {
    device: "cpu",
  });
  try {
    const options = { prompt: "x", seed: 1, steps: 1 };
    await assert.rejects(
      pipeline.generate({ ...options, lora: [await spec("loras/sd-turbo-tiny/peft", 1)] }),
      (e: Error) =>
        e instanceof LoraError &&
        /cannot be applied to this model: its denoiser graph/.test(e.message) &&
        /diffusers checkpoint/.test(e.message),
    );
    assert.equal((await pipeline.generate(options)).images.length, 1);
  } finally {
    await pipeline.release();
  }
});

const webgpu = await webGpuForTests();

Deno.test(
  `onnxruntime-web opens merged variants from memory, external data included (wasm${
    webgpu.ignored ? `; webgpu ignored: ${webgpu.ignored}` : ", webgpu"
  })`,
  async () => {
    const options = { prompt: "a red cube", seed: 5, width: 64, height: 64, steps: 2 };
    const lora = [await spec("loras/sd15-tiny/diffusers.safetensors", 1)];
    const results: RgbImage[][] = [];
    const devices: DeviceName[] = ["cpu", "wasm", ...(webgpu.ignored ? [] : ["webgpu" as const])];
    for (const device of devices) {
      const pipeline = await loadPipeline(join(FIXTURES, "models/sd15-tiny"), { device });
      try {
        const base = await pipeline.generate(options);
        const adapted = await pipeline.generate({ ...options, lora });
        assert.ok(!same(base.images, adapted.images), device);
        results.push(adapted.images);
      } finally {
        await pipeline.release();
      }
    }
    assert.ok(
      maxDiff(results[0], results[1]) <= 3,
      `wasm vs cpu: ${maxDiff(results[0], results[1])}`,
    );
  },
);

Deno.test("an edit with an adapter runs on the merged variant, with the base's VAE encoder", async () => {
  const pipeline = await loadPipeline(join(FIXTURES, "models/z-image-turbo-tiny"), {
    device: "cpu",
  });
  try {
    assert.equal(pipeline.maxEditImages, 1);
    const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(90) };
    const options = {
      prompt: "a green star",
      seed: 11,
      width: 64,
      height: 64,
      steps: 2,
      edit: { image, strength: 0.5 },
    };
    const base = await pipeline.generate(options);
    const lora = [await spec("loras/z-image-turbo-tiny/peft", 1)];
    const adapted = await pipeline.generate({ ...options, lora });
    const off = await pipeline.generate({
      ...options,
      lora: [await spec("loras/z-image-turbo-tiny/peft", 0)],
    });
    assert.equal(adapted.timings.stepMs.length, 1);
    assert.ok(!same(adapted.images, base.images));
    assert.ok(same(off.images, base.images));
  } finally {
    await pipeline.release();
  }
});
