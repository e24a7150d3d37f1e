import assert from "node:assert/strict";
import type { DeviceName } from "../../backends/backend.ts";
import { webGpuForTests } from "../../backends/webgpu_for_tests.ts";
import { CancelledError, InterfaceMismatchError, ModelLoadError } from "../../errors.ts";
import { loadPipeline } from "../../load.ts";
import type { GenerateResult, Pipeline } from "../../pipelines/pipeline.ts";
import { GraphBuilder } from "../../graph/onnx_builder.ts";

const FIXTURES = new URL("../../../fixtures/models/", import.meta.url).pathname;
const SD15 = `${FIXTURES}sd15-tiny`;
const TURBO = `${FIXTURES}sd-turbo-tiny`;
const webgpu = await webGpuForTests();

const BACKENDS: { device: DeviceName; ignore: boolean; reason: string }[] = [
  { device: "cpu", ignore: false, reason: "" },
  { device: "wasm", ignore: false, reason: "" },
  {
    device: "webgpu",
    ignore: webgpu.ignored !== undefined,
    reason: webgpu.ignored ? ` (ignored: ${webgpu.ignored})` : "",
  },
];

const pixels = (r: GenerateResult, i = 0) => r.images[i].data;
const differs = (a: Uint8Array, b: Uint8Array) => a.some((v, i) => v !== b[i]);

async function withPipeline(dir: string, device: DeviceName, fn: (p: Pipeline) => Promise<void>) {
  const p = await loadPipeline(dir, { device });
  try {
    await fn(p);
  } finally {
    await p.release();
  }
}

for (const { device, ignore, reason } of BACKENDS) {
  Deno.test({
    name:
      `${device}: SD-1.5 fixture (Optimum ≤1.23, external data) generates 64×64 images with CFG${reason}`,
    ignore,
    fn: () =>
      withPipeline(SD15, device, async (p) => {
        assert.equal(p.device, device);
        const steps: number[] = [];
        const r = await p.generate({
          prompt: "a red cat",
          width: 64,
          height: 64,
          steps: 2,
          seed: 7,
          n: 2,
          onStep: (s) => steps.push(s.step),
        });
        assert.deepEqual(steps, [0, 1]);
        assert.equal(r.images.length, 2);
        assert.equal(r.images[0].data.length, 64 * 64 * 3);
        assert.equal(r.seed, 7n);
        assert.equal(r.guidanceScale, 7.5);
        assert.equal(r.timings.stepMs.length, 2);
        assert.ok(differs(pixels(r, 0), pixels(r, 1)), "batched images must differ");
      }),
  });

  Deno.test({
    name:
      `${device}: SD-Turbo fixture (Optimum ≥1.24, float16 IO, int32 ids) is deterministic per seed${reason}`,
    ignore,
    fn: () =>
      withPipeline(TURBO, device, async (p) => {
        const opts = { prompt: "a dragon", width: 64, height: 64 };
        const a = await p.generate({ ...opts, seed: 42 });
        const b = await p.generate({ ...opts, seed: 42 });
        const c = await p.generate({ ...opts, seed: 43 });
        assert.deepEqual(pixels(a), pixels(b));
        assert.ok(differs(pixels(a), pixels(c)));
        assert.equal(a.steps, 1);
        assert.equal(a.guidanceScale, 0);
      }),
  });
}

Deno.test("guidance scale and negative prompt change the image; the prompt does too", () =>
  withPipeline(SD15, "cpu", async (p) => {
    const base = { prompt: "a red cat", width: 64, height: 64, steps: 2, seed: 1 };
    const ref = pixels(await p.generate(base));
    assert.ok(differs(ref, pixels(await p.generate({ ...base, guidanceScale: 2 }))), "guidance");
    assert.ok(
      differs(ref, pixels(await p.generate({ ...base, negativePrompt: "blurry" }))),
      "negative prompt",
    );
    assert.ok(differs(ref, pixels(await p.generate({ ...base, prompt: "a blue dog" }))), "prompt");
    // Without CFG (g ≤ 1) the negative prompt has no effect, as in diffusers.
    const noCfg = { ...base, guidanceScale: 1 };
    assert.deepEqual(
      pixels(await p.generate(noCfg)),
      pixels(await p.generate({ ...noCfg, negativePrompt: "blurry" })),
    );
  }));

Deno.test("same seed gives close images across backends (max |Δ| ≤ 3/255 cpu↔wasm)", async () => {
  const opts = { prompt: "a red cat", width: 64, height: 64, steps: 2, seed: 3 };
  const results: Record<string, Uint8Array> = {};
  for (const { device, ignore } of BACKENDS) {
    if (ignore) continue;
    await withPipeline(SD15, device, async (p) => {
      results[device] = pixels(await p.generate(opts));
    });
  }
  const maxDiff = (a: Uint8Array, b: Uint8Array) =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  assert.ok(
    maxDiff(results.cpu, results.wasm) <= 3,
    `cpu↔wasm ${maxDiff(results.cpu, results.wasm)}`,
  );
  if (results.webgpu) {
    assert.ok(
      maxDiff(results.cpu, results.webgpu) <= 3,
      `cpu↔webgpu ${maxDiff(results.cpu, results.webgpu)}`,
    );
  }
});

Deno.test("a scheduler can be swapped per call", () =>
  withPipeline(SD15, "cpu", async (p) => {
    const base = { prompt: "a cat", width: 64, height: 64, steps: 3, seed: 5 };
    const euler = await p.generate(base);
    const ancestral = await p.generate({ ...base, scheduler: "euler_a" });
    const ddim = await p.generate({ ...base, scheduler: "ddim" });
    assert.equal(euler.scheduler, "EulerDiscreteScheduler"); // PNDM in the config falls back to Euler
    assert.equal(ancestral.scheduler, "EulerAncestralDiscreteScheduler");
    assert.ok(differs(pixels(euler), pixels(ancestral)) && differs(pixels(euler), pixels(ddim)));
  }));

Deno.test("bad generation parameters are RangeErrors raised before any model runs", () =>
  withPipeline(SD15, "cpu", async (p) => {
    await assert.rejects(
      () => p.generate({ prompt: "x", width: 60, height: 64 }),
      /width must be a positive multiple of 8/,
    );
    await assert.rejects(
      () => p.generate({ prompt: "x", width: 64, height: 64, steps: 0 }),
      /num_inference_steps must be an integer >= 1/,
    );
    await assert.rejects(
      () => p.generate({ prompt: "x", width: 64, height: 64, n: 0 }),
      RangeError,
    );
    await assert.rejects(
      () => p.generate({ prompt: "x", width: 64, height: 64, guidanceScale: NaN }),
      RangeError,
    );
  }));

Deno.test("an aborted signal cancels between steps", () =>
  withPipeline(SD15, "cpu", async (p) => {
    const controller = new AbortController();
    await assert.rejects(
      () =>
        p.generate({
          prompt: "x",
          width: 64,
          height: 64,
          steps: 5,
          signal: controller.signal,
          onStep: (s) => s.step === 1 && controller.abort(),
        }),
      CancelledError,
    );
  }));

async function copyFixture(src: string): Promise<string> {
  const dir = await Deno.makeTempDir();
  await new Deno.Command("cp", { args: ["-r", `${src}/.`, dir] }).output();
  return dir;
}

Deno.test("missing and corrupt model files are ModelLoadErrors that name the file", async () => {
  await assert.rejects(
    () => loadPipeline("/nonexistent/model", { device: "cpu" }),
    /no such model folder/,
  );
  const dir = await copyFixture(SD15);
  try {
    await Deno.remove(`${dir}/unet/model.onnx`);
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      (e: Error) =>
        e instanceof ModelLoadError && /unet\/model\.onnx: file not found/.test(e.message),
    );
    await Deno.writeTextFile(`${dir}/unet/model.onnx`, "not a protobuf");
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      /unet\/model\.onnx .*not a loadable ONNX graph/,
    );
    await Deno.writeTextFile(`${dir}/model_index.json`, "{");
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      /model_index\.json: invalid JSON/,
    );
    await Deno.writeTextFile(
      `${dir}/model_index.json`,
      JSON.stringify({ _class_name: "FluxPipeline" }),
    );
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      /'FluxPipeline' is not supported/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a UNet with inputs the pipeline cannot drive fails with expected and found inputs", async () => {
  const dir = await copyFixture(SD15);
  try {
    // An SDXL-style UNet also wants text_embeds and time_ids.
    const g = new GraphBuilder("unet", 1);
    g.input("sample", "float32", ["batch_size", 4, "height", "width"]);
    g.input("timestep", "float32", []);
    g.input("encoder_hidden_states", "float32", ["batch_size", "sequence_length", 32]);
    g.input("text_embeds", "float32", ["batch_size", 1280]);
    g.op("Identity", ["sample"], {}, "out_sample");
    g.output("out_sample", "float32", ["batch_size", 4, "height", "width"]);
    await Deno.remove(`${dir}/unet/model.onnx_data`);
    await Deno.writeFile(`${dir}/unet/model.onnx`, g.serialize().model);
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      (e: Error) =>
        e instanceof InterfaceMismatchError &&
        e.message.includes("expected inputs sample float32|float16 rank 4") &&
        e.message.includes("text_embeds float32 [batch_size,1280]"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeImages records the image-encoding stage in the result's timings", () =>
  withPipeline(TURBO, "cpu", async (p) => {
    const { encodeImages } = await import("../../image/encode.ts");
    const r = await p.generate({ prompt: "x", width: 64, height: 64, seed: 1, n: 2 });
    assert.equal(r.timings.encodeMs, undefined);
    const pngs = await encodeImages(r, "png");
    assert.equal(pngs.length, 2);
    assert.ok(r.timings.encodeMs! >= 0);
    assert.deepEqual(Array.from(pngs[0].slice(1, 4)), [0x50, 0x4e, 0x47]);
  }));
