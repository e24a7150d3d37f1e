import assert from "node:assert/strict";
import { convertedFamilyOf, FAMILIES, familyOf } from "./mod.ts";
import { findModelCard, MODEL_REGISTRY } from "../registry.ts";

Deno.test("every folder of compute/families/ is a family listed once, under its folder's name", async () => {
  const folders: string[] = [];
  for await (const entry of Deno.readDir(new URL("./", import.meta.url))) {
    if (entry.isDirectory) folders.push(entry.name);
  }
  assert.deepEqual(FAMILIES.map((f) => f.name).sort(), folders.sort());
});

Deno.test("each pipeline class is served by exactly one family, and converted by that one", () => {
  for (const family of FAMILIES) {
    for (const cls of family.pipelineClasses) {
      assert.deepEqual(FAMILIES.filter((f) => f.pipelineClasses.includes(cls)), [family], cls);
      assert.equal(familyOf(cls), family);
    }
    for (const cls of family.convert.pipelineClasses) {
      assert.ok(family.pipelineClasses.includes(cls), `${family.name} converts ${cls}`);
      assert.equal(convertedFamilyOf(cls), family);
    }
    // Its first class names its diffusers folders (model_index.json of converted, published).
    assert.match(family.pipelineClasses[0], /^[A-Z]\w*Pipeline$/);
    assert.ok(!/^(ORT|Onnx)/.test(family.pipelineClasses[0]), family.name);
  }
});

Deno.test("each family converts its denoiser and serves sizes its models default to", () => {
  for (const family of FAMILIES) {
    assert.ok(family.convert.components.includes(family.denoiser), family.name);
    const { steps, guidanceScale } = family.defaults;
    assert.ok(Number.isInteger(steps) && steps > 0 && guidanceScale >= 0, family.name);
    for (const model of family.models) {
      const multiple = family.sizeMultiple ?? 8;
      assert.equal(model.defaults.width % multiple, 0, model.id);
      assert.equal(model.defaults.height % multiple, 0, model.id);
      assert.ok(model.defaults.width * model.defaults.height <= model.maxImagePixels, model.id);
      if (model.maxSteps !== undefined) assert.ok(model.defaults.steps <= model.maxSteps);
    }
  }
});

Deno.test("each family's preview maps its latent channels to RGB and names the VAE it fits", () => {
  for (const { name, preview } of FAMILIES) {
    const channels = preview.factors.matrix.length;
    assert.ok(channels === 4 || channels === 16, name);
    for (const row of preview.factors.matrix) assert.equal(row.length, 3, name);
    assert.ok(Object.keys(preview.vae).length > 0, name);
    if (preview.vae.latentsMean) assert.equal(preview.vae.latentsMean.length, channels, name);
  }
});

Deno.test("each family says where the step cache's signal is, for every cache backend", () => {
  for (const { name, stepCacheSignal } of FAMILIES) {
    for (const [cache, locators] of Object.entries(stepCacheSignal)) {
      assert.ok(locators.length > 0, `${name} ${cache}`);
      for (const l of locators) assert.match(l.prefix, /^\/.+\/$/, `${name} ${cache}`);
    }
  }
});

Deno.test("the registry holds every family's models once; the embedded model is Stable Diffusion's", () => {
  const ids = MODEL_REGISTRY.map((card) => card.id.toLowerCase());
  assert.equal(new Set(ids).size, ids.length);
  assert.equal(ids.length, FAMILIES.reduce((n, f) => n + f.models.length, 0));
  assert.equal(findModelCard("denoise/shapes-tiny")?.family, "StableDiffusionPipeline");
  assert.equal(findModelCard("tongyi-mai/z-image-turbo")?.family, "ZImagePipeline");
});
