/**
 * Models converted from diffusers' tiny reference folders (`fixtures/reference/`; SD 2.x from its
 * single-file checkpoint), served as a user serves them, draw diffusers' own images for the same calls (prompt, seed 42, 4 steps, 64×64, two
 * guidance values each) within 2/255.
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { convert } from "../compute/convert/mod.ts";
import {
  imageDifference,
  REFERENCE_DATA,
  referenceCalls,
  requestImage,
} from "../fixtures/reference/served.ts";
import { startServer } from "./test_server.ts";

/**
 * Converts `family`'s folder (or with `singleFile` its single-file checkpoint, configured by the
 * folder), serves it, and checks every recorded call; `more` checks more.
 */
async function servedLikeDiffusers(
  family: string,
  pipeline: string,
  more?: (url: string, fields: Record<string, unknown>, pixels: ArrayLike<number>) => Promise<void>,
  singleFile = false,
): Promise<void> {
  const tmp = await Deno.makeTempDir();
  try {
    const folder = `${REFERENCE_DATA}${family}`;
    if (singleFile) await convert(`${folder}.safetensors`, `${tmp}/model`, { config: folder });
    else await convert(folder, `${tmp}/model`);
    const server = await startServer(["--model", `${tmp}/model`, "--device", "cpu"]);
    try {
      const models = await (await fetch(`${server.url}/v1/models`)).json();
      assert.equal(models.data[0].family, pipeline, JSON.stringify(models));
      for (const call of await referenceCalls(family)) {
        const png = await requestImage(server.url, call.fields);
        assert.deepEqual([png.width, png.height, png.channels], [call.width, call.height, 3]);
        const { worst, unequal } = imageDifference(png.data, call.image);
        console.log(
          `${family} ${call.name}: max difference ${
            worst.toFixed(3)
          }/255 from diffusers' float image; ${unequal} of ${call.image.length} 8-bit values differ from its rounding`,
        );
        assert.ok(worst <= 2, `${family} ${call.name}: ${worst}/255`);
        await more?.(server.url, call.fields, png.data);
      }
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("a converted SD 1.x folder served by the server gives diffusers' image within 2/255", () =>
  servedLikeDiffusers("sd15", "StableDiffusionPipeline"));

/**
 * SD 2.x from its single-file form (OpenCLIP's text tower with joined q/k/v; the folder converts to
 * the same bytes: compute/convert/convert_test.ts): a `gelu` text encoder, per-level heads, linear
 * projections, a tokenizer padding with "!", DDIM with v-prediction.
 */
Deno.test("an SD 2.x single-file checkpoint served by the server gives diffusers' image within 2/255", () =>
  servedLikeDiffusers("sd2", "StableDiffusionPipeline", undefined, true));

/**
 * SDXL: two CLIP encoders of different widths, a `text_time` UNet, SDXL's VAE scaling; with
 * guidance and no negative prompt the negative conditioning is zeros, as
 * `force_zeros_for_empty_prompt` says.
 */
Deno.test("a converted SDXL folder served by the server gives diffusers' image within 2/255", () =>
  servedLikeDiffusers("sdxl", "StableDiffusionXLPipeline", async (url, fields, pixels) => {
    if ((fields.guidance_scale as number) <= 1) return;
    // An explicit empty negative prompt is encoded, not zeroed: another image.
    const encoded = await requestImage(url, { ...fields, negative_prompt: "" });
    assert.ok(
      Array.from(encoded.data).some((v, i) => v !== pixels[i]),
      "negative_prompt '' gave the zeroed negative's image",
    );
  }));

/** Z-Image: ZImageTransformer2DModel, a Qwen3 text encoder, a 16-channel VAE, slow tokenizer files. */
Deno.test("a converted Z-Image folder served by the server gives diffusers' image within 2/255", () =>
  servedLikeDiffusers("zimage", "ZImagePipeline"));

/**
 * Qwen-Image: QwenImageTransformer2DModel, the Qwen2.5-VL language model with the prompt template
 * and its 34 dropped tokens, the causal 3-D VAE on one frame, the dynamic-shift flow scheduler, true
 * CFG with its norm rescale (true_cfg_scale 4 and the empty negative prompt); the chat endpoint, fed
 * the same parameters in `extra_body`, answers the same PNG.
 */
Deno.test("a converted Qwen-Image folder served by the server gives diffusers' image within 2/255 (true CFG 1 and 4), on both endpoints", () =>
  servedLikeDiffusers("qwenimage", "QwenImagePipeline", async (url, fields, pixels) => {
    const { prompt, ...params } = fields;
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: prompt }], extra_body: params }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    const png = decode(
      Uint8Array.fromBase64(body.choices[0].message.content[0].image_url.url.split(",")[1]),
    );
    assert.deepEqual(Array.from(png.data), Array.from(pixels), "chat's image differs from images'");
  }));
