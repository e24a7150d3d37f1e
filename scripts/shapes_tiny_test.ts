/**
 * The embedded default model, models/shapes-tiny: its tokenizer agrees with the trainer's, the
 * scene checker reads ground-truth renders, it loads and agrees across backends, and through the
 * real server it draws what a handful of prompts ask for.
 */
import assert from "node:assert/strict";
import type { DeviceName } from "../compute/mod.ts";
import { loadPipeline } from "../compute/mod.ts";
import { webGpuForTests } from "../compute/backends/webgpu_for_tests.ts";
import { ClipTokenizer } from "../compute/tokenizers/clip_tokenizer.ts";
import { startServer } from "../src/test_server.ts";
import { judgeFolder, readImage } from "./judge.ts";
import { type Expectation, judge, readScene } from "./scene_check.ts";

const MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const read = (path: string) => Deno.readTextFile(new URL(path, import.meta.url));

Deno.test("shapes-tiny tokenizer: the served CLIP tokenizer gives the trainer's ids", async () => {
  const tokenizer = await ClipTokenizer.load(`${MODEL}/tokenizer`);
  const cases: { text: string; ids: number[] }[] = JSON.parse(
    await read("../training/token_ids.json"),
  );
  assert.ok(cases.length > 40);
  for (const { text, ids } of cases) assert.deepEqual(tokenizer.encode(text), ids, text);
  // Text outside the grammar still tokenizes (byte-level pieces), truncated to 77.
  const odd = tokenizer.encode("a dragon 🐉 über den Wolken, 42! ".repeat(20));
  assert.equal(odd.length, 77);
});

// testdata/scenes: `/usr/bin/python3 training/scenes.py --renders scripts/testdata/scenes 12`.
Deno.test("scene checker: reads every attribute of ground-truth renders", async () => {
  const { score, shapes } = await judgeFolder(
    new URL("./testdata/scenes", import.meta.url).pathname,
  );
  assert.equal(score.images, 12);
  assert.equal(score.all, 1, JSON.stringify(score.attributes));
  // Each shape asked for is read as itself and nothing else.
  for (const [asked, reads] of Object.entries(shapes)) {
    assert.deepEqual(Object.keys(reads), [asked]);
  }
});

async function render(device: DeviceName): Promise<Uint8Array> {
  const p = await loadPipeline(MODEL, { device });
  try {
    const r = await p.generate({
      prompt: "a red circle on a blue background",
      width: 64,
      height: 64,
      steps: 2,
      guidanceScale: 5,
      seed: 3,
    });
    return r.images[0].data;
  } finally {
    await p.release();
  }
}
const maxDiff = (a: Uint8Array, b: Uint8Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

Deno.test("shapes-tiny loads on cpu and wasm and gives close images (max |Δ| ≤ 3/255)", async () => {
  const d = maxDiff(await render("cpu"), await render("wasm"));
  assert.ok(d <= 3, `cpu↔wasm max |Δ| ${d}`);
});

const webgpu = await webGpuForTests();
Deno.test({
  // Its conv_in reads 18 channels, which WebGPU's Conv miscomputes unless the backend pads them
  // (compute/graph/conv_channel_padding.ts; before that, max |Δ| 2.8 on one UNet call).
  name: `shapes-tiny on WebGPU matches cpu${webgpu.ignored ? ` (ignored: ${webgpu.ignored})` : ""}`,
  ignore: webgpu.ignored !== undefined,
  fn: async () => {
    const d = maxDiff(await render("cpu"), await render("webgpu"));
    assert.ok(d <= 3, `cpu↔webgpu max |Δ| ${d}`);
  },
});

Deno.test("the default server draws what the prompt asks for", async (t) => {
  const started = performance.now();
  const server = await startServer(["--device", "cpu"]);
  const healthyMs = performance.now() - started;
  const generate = async (body: Record<string, unknown>) => {
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return res;
  };
  const image = async (body: Record<string, unknown>) => {
    const res = await generate(body);
    assert.equal(res.status, 200);
    return readImage(Uint8Array.fromBase64((await res.json()).data[0].b64_json));
  };
  try {
    // The 2 s target is measured by `deno task bench:serving` on a quiet machine; here, with the
    // whole suite running in parallel, only a generous bound.
    await t.step(`starts healthy (${healthyMs.toFixed(0)} ms)`, () => {
      assert.ok(healthyMs < 20_000, `${healthyMs.toFixed(0)} ms`);
    });
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(models.data[0].id, "denoise/shapes-tiny");
    // What is asserted: every attribute these prompts name (held-out set at the defaults:
    // colour, background, shape and position 100 %, count 96 %, size 95 %). Two objects of one
    // colour side by side sometimes merge into one blob ("two purple squares on an orange
    // background": 3 of seeds 0–9 right), so the two-object case is the issue's own example, right
    // for 9 of seeds 0–9. The share of held-out images right on everything is measured by
    // `deno task score`, not here.
    const cases: { prompt: string; seed: number; expect: Partial<Expectation> }[] = [
      {
        prompt: "a red circle on a blue background",
        seed: 4,
        expect: { colour: "red", shape: "circle", background: "blue" },
      },
      {
        prompt: "a large yellow star in the top left on a black background",
        seed: 2,
        expect: {
          colour: "yellow",
          shape: "star",
          background: "black",
          position: "top left",
          size: "large",
        },
      },
      {
        prompt: "a green triangle on the right on a white background",
        seed: 1,
        expect: { colour: "green", shape: "triangle", background: "white", position: "right" },
      },
      {
        prompt: "two yellow stars on a black background",
        seed: 2,
        expect: { colour: "yellow", shape: "star", background: "black", count: 2 },
      },
    ];
    for (const { prompt, seed, expect } of cases) {
      await t.step(prompt, async () => {
        const seen = readScene(await image({ prompt, seed }));
        const verdict = Object.fromEntries(
          Object.entries(judge(expect as Expectation, seen)).filter(([k]) => k in expect),
        );
        assert.ok(
          Object.values(verdict).every(Boolean),
          `${JSON.stringify(verdict)}; saw ${JSON.stringify({ ...seen, features: undefined })}`,
        );
      });
    }
    await t.step("guidance 0 and the default give different images", async () => {
      const req = { prompt: "a white ring on a red background", seed: 5, size: "128x128" };
      const a = await image(req);
      const b = await image({ ...req, guidance_scale: 0 });
      assert.ok(a.data.some((v, i) => v !== b.data[i]));
    });
    await t.step("seeds change the picture", async () => {
      const req = { prompt: "a blue heart on a yellow background", size: "128x128" };
      const a = await image({ ...req, seed: 10 });
      const b = await image({ ...req, seed: 11 });
      assert.ok(a.data.some((v, i) => v !== b.data[i]));
    });
    await t.step("prompts outside the grammar still give an image", async () => {
      for (const prompt of ["a dragon over the mountains of Vermont, 4k 🐉", " ", "!!!"]) {
        const img = await image({ prompt, seed: 1, size: "64x64" });
        assert.equal(img.width, 64);
      }
    });
    await t.step("an empty prompt is a 422, as the API says", async () => {
      const res = await generate({ prompt: "" });
      assert.equal(res.status, 422);
      await res.body?.cancel();
    });
  } finally {
    await server.stop();
  }
});
