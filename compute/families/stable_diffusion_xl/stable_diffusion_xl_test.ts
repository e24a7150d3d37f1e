import assert from "node:assert/strict";
import { convert } from "../../convert/mod.ts";
import { InterfaceMismatchError } from "../../errors.ts";
import { loadPipeline } from "../../load.ts";

const DATA = new URL("../../../fixtures/reference/data/", import.meta.url).pathname;

/** The tiny diffusers SDXL folder converted once into a temporary model folder. */
async function withModel(fn: (dir: string) => Promise<void>) {
  const tmp = await Deno.makeTempDir();
  try {
    await convert(`${DATA}/sdxl`, `${tmp}/model`);
    await fn(`${tmp}/model`);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("SDXL: defaults from the configs; batch-mates with guidance get their own conditioning rows; latent previews", () =>
  withModel(async (dir) => {
    const p = await loadPipeline(dir, { device: "cpu" });
    try {
      assert.equal(p.family, "StableDiffusionXLPipeline");
      // sample_size 8 × 8; the reference's trailing Euler marks a distilled model: 1 step, no CFG.
      assert.deepEqual(p.defaults, { width: 64, height: 64, steps: 1, guidanceScale: 0 });
      // Three UNet levels: latents halve twice.
      assert.equal(p.sizeMultiple, 32);
      const requests = [
        { prompt: "a red circle", seed: 1, guidanceScale: 5, steps: 2 },
        { prompt: "a blue circle", seed: 2, guidanceScale: 5, steps: 2, negativePrompt: "red" },
        { prompt: "a red circle", seed: 3, guidanceScale: 3, steps: 2, n: 2 },
      ];
      const together = await p.generateBatch(requests);
      for (const [i, request] of requests.entries()) {
        const alone = await p.generate(request);
        const outcome = together[i];
        assert.ok(outcome.ok);
        assert.equal(outcome.result.images.length, request.n ?? 1);
        outcome.result.images.forEach((image, k) =>
          assert.deepEqual(image.data, alone.images[k].data, `request ${i}, image ${k}`)
        );
      }
      // SDXL's VAE (scaling factor 0.13025) has latent→RGB factors: previews at latent size.
      const previews: number[] = [];
      await p.generate({
        prompt: "a red circle",
        steps: 4,
        previews: 1,
        onPreview: (preview) => previews.push(preview.images[0].width),
      });
      assert.deepEqual(previews, [64 / 8]);
    } finally {
      await p.release();
    }
  }));

Deno.test("SDXL: a folder whose encoders are swapped is refused at load, naming the graph", () =>
  withModel(async (dir) => {
    await Deno.rename(`${dir}/text_encoder`, `${dir}/swap`);
    await Deno.rename(`${dir}/text_encoder_2`, `${dir}/text_encoder`);
    await Deno.rename(`${dir}/swap`, `${dir}/text_encoder_2`);
    await assert.rejects(
      loadPipeline(dir, { device: "cpu" }),
      (e) =>
        e instanceof InterfaceMismatchError &&
        /text_encoder_2\/model\.onnx/.test(e.message) && /text_embeds/.test(e.message),
    );
  }));
