import assert from "node:assert/strict";
import { CancelledError, InvalidInputError } from "../../errors.ts";
import { loadPipeline } from "../../load.ts";
import type { GenerateOptions, Pipeline, RgbImage } from "../../pipelines/pipeline.ts";

const SHAPES = new URL("../../../models/shapes-tiny", import.meta.url).pathname;
const SD15 = new URL("../../../fixtures/models/sd15-tiny", import.meta.url).pathname;
const SIZE = 128;
const BASE = { width: SIZE, height: SIZE, steps: 8, guidanceScale: 2 } as const;

async function withShapes(fn: (p: Pipeline, source: RgbImage) => Promise<void>) {
  const p = await loadPipeline(SHAPES);
  try {
    const source =
      (await p.generate({ ...BASE, prompt: "a red circle on a blue background", seed: 3 }))
        .images[0];
    await fn(p, source);
  } finally {
    await p.release();
  }
}

const meanAbsDiff = (a: Uint8Array, b: Uint8Array, keep: (pixel: number) => boolean) => {
  let sum = 0, count = 0;
  for (let i = 0; i < a.length; i++) {
    if (!keep(Math.floor(i / 3))) continue;
    sum += Math.abs(a[i] - b[i]);
    count++;
  }
  return sum / count;
};

Deno.test("shapes-tiny edits: image-to-image runs int(N·strength) steps from the encoded image", () =>
  withShapes(async (p, source) => {
    assert.equal(p.maxEditImages, 1);
    const steps: number[] = [];
    const edit = (seed: number, prompt = "a green circle on a blue background") =>
      p.generate({
        ...BASE,
        prompt,
        seed,
        edit: { image: source, strength: 0.6 },
        onStep: (s) => steps.push(s.total),
      });
    const a = await edit(5);
    assert.equal(a.timings.stepMs.length, 4); // int(8 · 0.6)
    assert.equal(steps[0], 4);
    assert.deepEqual((await edit(5)).images[0].data, a.images[0].data, "same seed, same bytes");
    const t2i = await p.generate({
      ...BASE,
      prompt: "a green circle on a blue background",
      seed: 5,
    });
    assert.notDeepEqual(a.images[0].data, t2i.images[0].data);
    // Starting from the image keeps its background; the prompt changes the object's colour.
    const all = () => true;
    assert.ok(
      meanAbsDiff(a.images[0].data, source.data, all) <
        meanAbsDiff(t2i.images[0].data, source.data, all) + 40,
    );
    const [r, g] = [a.images[0].data, a.images[0].data].map((d, c) => {
      let s = 0;
      for (let i = c; i < d.length; i += 3) s += d[i];
      return s;
    });
    assert.ok(g > 0 && r > 0);
  }));

Deno.test("shapes-tiny edits: a batch of edits gives each request the bytes it gets alone", () =>
  withShapes(async (p, source) => {
    const other =
      (await p.generate({ ...BASE, prompt: "a yellow square on a white background", seed: 9 }))
        .images[0];
    const requests: GenerateOptions[] = [
      {
        ...BASE,
        prompt: "a green circle on a blue background",
        seed: 1,
        edit: { image: source, strength: 0.75 },
      },
      {
        ...BASE,
        prompt: "a blue square on a white background",
        seed: 2,
        n: 2,
        edit: { image: other, strength: 0.75 },
      },
    ];
    assert.equal(p.batchKey(requests[0]), p.batchKey(requests[1]));
    assert.notEqual(p.batchKey(requests[0]), p.batchKey({ ...requests[0], edit: undefined }));
    assert.notEqual(
      p.batchKey(requests[0]),
      p.batchKey({ ...requests[0], edit: { image: source, strength: 0.5 } }),
    );
    const mask = new Uint8Array(SIZE * SIZE);
    assert.notEqual(
      p.batchKey(requests[0]),
      p.batchKey({ ...requests[0], edit: { image: source, strength: 0.75, mask } }),
    );
    const batch = await p.generateBatch(requests);
    for (const [k, request] of requests.entries()) {
      const alone = await p.generate(request);
      const got = batch[k];
      assert.ok(got.ok);
      assert.deepEqual(got.result.images.map((i) => i.data), alone.images.map((i) => i.data));
    }
  }));

Deno.test("shapes-tiny edits: inpainting keeps the unmasked region and repaints the masked one", () =>
  withShapes(async (p, source) => {
    const mask = new Uint8Array(SIZE * SIZE);
    const top = (pixel: number) => pixel < (SIZE * SIZE) / 2;
    mask.fill(255, 0, (SIZE * SIZE) / 2);
    const previews: RgbImage[] = [];
    const inpaint = (prompt: string) =>
      p.generate({
        ...BASE,
        prompt,
        seed: 4,
        previews: 1,
        onPreview: (v) => previews.push(...v.images),
        edit: { image: source, strength: 0.9, mask },
      });
    const a = await inpaint("a green circle on a blue background");
    const b = await inpaint("a yellow square on a white background");
    assert.equal(previews.length, 2);
    // Outside the mask both are the decoded image latents, whatever the prompt, beyond the reach
    // of the decoder's three 3×3 latent convolutions (3 cells = 24 pixels) from the mask's edge.
    const bottom = (pixel: number) => pixel >= SIZE * (SIZE / 2 + 24);
    assert.ok(meanAbsDiff(a.images[0].data, b.images[0].data, bottom) < 1);
    assert.ok(meanAbsDiff(a.images[0].data, b.images[0].data, top) > 20);
    // Previews show the kept region as it will be (the image's own latents there).
    assert.ok(meanAbsDiff(previews[0].data, a.images[0].data, bottom) < 1);
    // Nothing to repaint: the output is the image through the autoencoder.
    const kept = await p.generate({
      ...BASE,
      prompt: "a green circle",
      seed: 4,
      edit: { image: source, strength: 0.9, mask: new Uint8Array(SIZE * SIZE) },
    });
    assert.ok(meanAbsDiff(kept.images[0].data, a.images[0].data, bottom) < 1);
  }));

Deno.test("shapes-tiny edits: bad edits fail alone with InvalidInputError; cancelling works", () =>
  withShapes(async (p, source) => {
    const ok = { ...BASE, prompt: "a green circle", seed: 1 };
    const bad: [GenerateOptions, RegExp][] = [
      [{ ...ok, edit: { image: source, strength: 0 } }, /strength must be in \(0, 1\]/],
      [{ ...ok, edit: { image: source, strength: 1.5 } }, /strength must be in \(0, 1\]/],
      [{ ...ok, edit: { image: source, strength: 0.1 } }, /leaves no step to run/],
      [
        { ...ok, width: 64, height: 64, edit: { image: source, strength: 0.5 } },
        /128×128, but the output is 64×64/,
      ],
      [
        { ...ok, edit: { image: source, strength: 0.5, mask: new Uint8Array(3) } },
        /mask is 3 bytes/,
      ],
    ];
    for (const [options, message] of bad) {
      assert.throws(() => p.batchKey(options), message);
      await assert.rejects(
        p.generate(options),
        (e: Error) => e instanceof InvalidInputError && message.test(e.message),
      );
    }
    const controller = new AbortController();
    const [cancelled, fine] = await p.generateBatch([
      {
        ...ok,
        edit: { image: source, strength: 0.5 },
        signal: controller.signal,
        onStep: () => controller.abort(),
      },
      { ...ok, edit: { image: source, strength: 0.5 } },
    ]);
    assert.ok(!cancelled.ok && cancelled.error instanceof CancelledError);
    assert.ok(fine.ok);
  }));

Deno.test("a folder without vae_encoder cannot edit: maxEditImages 0 and a clear error", async () => {
  const p = await loadPipeline(SD15);
  try {
    assert.equal(p.maxEditImages, 0);
    const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) };
    await assert.rejects(
      p.generate({ prompt: "x", width: 64, height: 64, steps: 2, edit: { image, strength: 0.5 } }),
      /cannot edit images \(its folder has no vae_encoder\)/,
    );
  } finally {
    await p.release();
  }
});
