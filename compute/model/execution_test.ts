import assert from "node:assert/strict";
import { join } from "node:path";
import type { DeviceName } from "../backends/backend.ts";
import { selectBackend } from "../backends/device.ts";
import { webGpuForTests } from "../backends/webgpu_for_tests.ts";
import { loadPipeline } from "../load.ts";
import { adapterFiles } from "../lora/files.ts";
import type { GenerateOptions, RgbImage } from "../pipelines/pipeline.ts";
import { AUTO_MAX_CALL_VALUES, rowsPerCall } from "../pipelines/row_calls.ts";
import { QwenImagePipeline } from "../families/qwen_image/qwen_image.ts";
import { executionPrepare, type ExecutionSettings, offloadNeeded } from "./execution.ts";
import { folderGraphs, preparedGraphs } from "./model_folder.ts";
import type { OnDemandSession } from "./on_demand_session.ts";

const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;

/** One fixture per family, with options that make its denoiser see several rows per step. */
const CASES: { name: string; options: GenerateOptions }[] = [
  // [uncond × 2, cond × 2] in one UNet call.
  { name: "sd15-tiny", options: { prompt: "a red cube", steps: 2, guidanceScale: 5, n: 2 } },
  // [cond, neg] (true CFG 4 by default).
  { name: "qwen-image-tiny", options: { prompt: "a red cube", width: 64, height: 48, steps: 2 } },
  // Two calls (prompt, negative prompt) asked at once.
  {
    name: "z-image-turbo-tiny",
    options: { prompt: "a red cube", width: 64, height: 64, steps: 2, guidanceScale: 3 },
  },
];

async function images(
  name: string,
  execution: ExecutionSettings,
  options: GenerateOptions,
  device: DeviceName = "cpu",
) {
  const p = await loadPipeline(join(FIXTURES, "models", name), { device, execution });
  try {
    return (await p.generate({ ...options, seed: 11 })).images;
  } finally {
    await p.release();
  }
}

/** The images' pixels as a short digest: equal digests, equal bytes (a failure prints no arrays). */
const bytes = (images: RgbImage[]) => {
  let h = 0x811c9dc5;
  for (const image of images) {
    for (const v of image.data) h = Math.imul(h ^ v, 0x01000193) >>> 0;
  }
  return `${images.length} image(s), FNV-1a ${h.toString(16)}`;
};

for (const c of CASES) {
  Deno.test(`${c.name}: sequential and two parallel sessions draw the batched form's bytes`, async () => {
    const batched = await images(c.name, { cfgMode: "batch" }, c.options);
    assert.equal(bytes(await images(c.name, { cfgMode: "sequential" }, c.options)), bytes(batched));
    assert.equal(
      bytes(await images(c.name, { cfgMode: "batch", cfgParallelSize: 2 }, c.options)),
      bytes(batched),
    );
  });
}

const webgpu = await webGpuForTests();

Deno.test(
  `onnxruntime-web: sequential (wasm${
    webgpu.ignored ? `; webgpu ignored: ${webgpu.ignored}` : ", webgpu"
  }) and two parallel sessions (wasm) draw the batched form's bytes; webgpu refuses two`,
  async () => {
    const devices: DeviceName[] = ["wasm", ...(webgpu.ignored ? [] : ["webgpu" as const])];
    const { name, options } = CASES[1];
    for (const device of devices) {
      const batched = bytes(await images(name, { cfgMode: "batch" }, options, device));
      assert.equal(
        bytes(await images(name, { cfgMode: "sequential" }, options, device)),
        batched,
        device,
      );
      const parallel = images(name, { cfgMode: "batch", cfgParallelSize: 2 }, options, device);
      if (device === "webgpu") {
        await assert.rejects(
          parallel,
          /^ModelLoadError: --cfg-parallel-size 2 is not available on webgpu: /,
        );
      } else assert.equal(bytes(await parallel), batched, device);
    }
  },
);

Deno.test("auto splits a call once it would hold more than 2^18 latent values", () => {
  const qwen1024 = 16 * 128 * 128, qwen512 = 16 * 64 * 64, sdxl1024 = 4 * 128 * 128;
  assert.equal(qwen1024, AUTO_MAX_CALL_VALUES);
  assert.equal(rowsPerCall("auto", qwen1024), 1);
  assert.equal(rowsPerCall("auto", qwen512), 4);
  assert.equal(rowsPerCall("auto", sdxl1024), 4);
  assert.equal(rowsPerCall("batch", qwen1024), Infinity);
  assert.equal(rowsPerCall("sequential", 1), 1);
});

Deno.test("auto offload: the text encoders and the denoiser over half of the memory", async () => {
  const dir = join(FIXTURES, "models", "qwen-image-tiny");
  assert.equal(await offloadNeeded(dir, 2 ** 40), false);
  assert.equal(await offloadNeeded(dir, 2 ** 10), true);
});

Deno.test("offload: the text encoder closes when the transformer runs and reopens for the next request, once a batch", async () => {
  const dir = join(FIXTURES, "models", "qwen-image-tiny");
  const backend = await selectBackend("cpu");
  const options = { prompt: "a red cube", width: 64, height: 48, steps: 2, seed: 5 };
  const load = async (offload: boolean) => {
    const graphs = preparedGraphs(
      folderGraphs(dir, backend),
      executionPrepare({}, backend, navigator.hardwareConcurrency, offload),
    );
    return { pipeline: await QwenImagePipeline.load(graphs), graphs };
  };
  const kept = await load(false);
  const offloaded = await load(true);
  try {
    const expected = bytes((await kept.pipeline.generate(options)).images);
    const encoder = offloaded.graphs.opened.get("text_encoder") as OnDemandSession;
    assert.equal(encoder.reopens, 0);
    assert.equal(bytes((await offloaded.pipeline.generate(options)).images), expected);
    // Closed when the transformer opened at load; the first request opened it again.
    assert.equal(encoder.reopens, 1);
    assert.equal(
      bytes((await offloaded.pipeline.generate({ ...options, prompt: "a blue ball" })).images),
      bytes((await kept.pipeline.generate({ ...options, prompt: "a blue ball" })).images),
    );
    assert.equal(encoder.reopens, 2, "the second request reopened it");
    // A batch of two: one reopen for both encodings, both images as alone.
    const batch = await offloaded.pipeline.generateBatch([options, { ...options, seed: 6 }]);
    assert.equal(encoder.reopens, 3);
    assert.ok(batch[0].ok && batch[1].ok);
    assert.equal(bytes(batch[0].result.images), expected);
    // A cancelled request leaves it usable.
    const cancelled = await offloaded.pipeline.generateBatch([
      { ...options, signal: { aborted: true } },
    ]);
    assert.equal(cancelled[0].ok, false);
    assert.equal(bytes((await offloaded.pipeline.generate(options)).images), expected);
  } finally {
    await kept.pipeline.release();
    await offloaded.pipeline.release();
  }
});

Deno.test("offload with a LoRA on the text encoder: the same images as kept loaded, request after request", async () => {
  const dir = join(FIXTURES, "models", "sd15-tiny");
  const lora = [{
    id: "l",
    files: await adapterFiles(join(FIXTURES, "loras/sd15-tiny/diffusers.safetensors")),
    scale: 0.8,
  }];
  const options = { prompt: "a red cube", steps: 2, guidanceScale: 5, seed: 3 };
  const run = async (offload: boolean) => {
    const p = await loadPipeline(dir, { device: "cpu", execution: { offload } });
    try {
      const out = [];
      for (const o of [{ ...options, lora }, options, { ...options, lora }]) {
        out.push(bytes((await p.generate(o)).images));
      }
      return out;
    } finally {
      await p.release();
    }
  };
  const kept = await run(false);
  assert.notEqual(kept[0], kept[1]);
  assert.ok((await run(true)).every((b, k) => b === kept[k]));
});
