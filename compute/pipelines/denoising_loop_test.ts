import assert from "node:assert/strict";
import { CancelledError } from "../errors.ts";
import { loadPipeline } from "../load.ts";
import type { GenerateOptions, Preview } from "./pipeline.ts";
import { eachLive, type Member, previewSteps } from "./denoising_loop.ts";

const fixture = (name: string) =>
  new URL(`../../fixtures/models/${name}`, import.meta.url).pathname;
const FIXTURES = ["sd15-tiny", "sd-turbo-tiny", "qwen-image-tiny", "z-image-turbo-tiny"];

for (const name of FIXTURES) {
  Deno.test(`${name}: a request batched with others gets the same pixels as alone (cpu)`, async () => {
    const pipeline = await loadPipeline(fixture(name), { device: "cpu" });
    try {
      for (const guidance of [{}, { guidanceScale: 0, trueCfgScale: 0 }]) {
        const own: GenerateOptions = {
          prompt: "a red cat",
          seed: 5,
          width: 64,
          height: 64,
          steps: 3,
          ...guidance,
        };
        const mates = [
          { ...own, prompt: "a red dog", seed: 9 },
          { ...own, prompt: "a red cow", seed: 11, n: 2, guidanceScale: own.guidanceScale ?? 3 },
        ].filter((o) => pipeline.batchKey(o) === pipeline.batchKey(own));
        const alone = await pipeline.generate(own);
        const outcomes = await pipeline.generateBatch([mates[0], own, ...mates.slice(1)]);
        const batched = outcomes[1];
        assert.ok(batched.ok);
        assert.deepEqual(batched.result.images, alone.images);
        assert.equal(batched.result.seed, 5n);
      }
    } finally {
      await pipeline.release();
    }
  });
}

Deno.test("a cancelled member leaves the batch; the others finish with their own images", async () => {
  const pipeline = await loadPipeline(fixture("sd15-tiny"), { device: "cpu" });
  try {
    const base = { prompt: "a boat", width: 64, height: 64, steps: 6 };
    const cancel = new AbortController();
    const steps: number[] = [];
    const alone = await pipeline.generate({ ...base, seed: 1 });
    const [kept, cancelled] = await pipeline.generateBatch([
      { ...base, seed: 1 },
      {
        ...base,
        seed: 2,
        signal: cancel.signal,
        onStep: ({ step }) => {
          steps.push(step);
          if (step === 1) cancel.abort();
        },
      },
    ]);
    assert.ok(kept.ok);
    assert.deepEqual(kept.result.images, alone.images);
    assert.ok(!cancelled.ok && cancelled.error instanceof CancelledError);
    assert.deepEqual(steps, [0, 1]);
  } finally {
    await pipeline.release();
  }
});

Deno.test("a member cancelled during a batch-mate's stage (text encoding, decode) never starts its own", async () => {
  const second = new AbortController();
  const member = (signal?: AbortSignal) =>
    ({
      options: { prompt: "", signal },
      timings: { tokenizeMs: 0, textEncodeMs: 0, stepMs: [], decodeMs: 0 },
    }) as unknown as Member;
  const members = [member(), member(second.signal)];
  const ran: number[] = [];
  await eachLive(members, "decodeMs", (m) => {
    ran.push(members.indexOf(m));
    second.abort(); // the second request's client leaves while the first one decodes
    return Promise.resolve();
  });
  assert.deepEqual(ran, [0]);
  assert.ok(members[1].error instanceof CancelledError);
  assert.equal(members[0].error, undefined);
});

Deno.test("previews: evenly spread, never on the last step, x̂₀ of every image", async () => {
  assert.deepEqual([...previewSteps(20, 3).entries()], [[4, 0], [9, 1], [14, 2]]);
  assert.deepEqual([...previewSteps(2, 3).keys()], [0]);
  assert.deepEqual([...previewSteps(1, 2).keys()], []);
  for (const name of FIXTURES) {
    const pipeline = await loadPipeline(fixture(name), { device: "cpu" });
    try {
      const previews: Preview[] = [];
      const result = await pipeline.generate({
        prompt: "a tree",
        seed: 3,
        width: 128,
        height: 64,
        steps: 8,
        n: 2,
        previews: 3,
        onPreview: (p) => previews.push(p),
      });
      assert.deepEqual(previews.map((p) => [p.index, p.step]), [[0, 1], [1, 3], [2, 5]], name);
      for (const p of previews) {
        assert.equal(p.images.length, 2);
        // Latent-space approximations are 1/8 of the output; VAE previews are full size.
        assert.equal(p.images[0].width / p.images[0].height, 2);
        assert.ok(p.images[0].width === 16 || p.images[0].width === result.width, name);
      }
      assert.notDeepEqual(previews[0].images[0].data, previews[2].images[0].data);
    } finally {
      await pipeline.release();
    }
  }
});
