import assert from "node:assert/strict";
import { decode } from "fast-png";
import { convert, parseSafetensors, tensorToFloat32 } from "../compute/convert/mod.ts";
import { startServer } from "./test_server.ts";

const DATA = new URL("../fixtures/reference/data/", import.meta.url).pathname;

/**
 * A model converted from diffusers' tiny SDXL folder (two CLIP encoders of different widths, a
 * `text_time` UNet, SDXL's VAE scaling), served as a user serves it, draws diffusers' own image
 * for the same calls (prompt, seed 42, 4 steps, 64×64, guidance 1 and 5; with guidance and no
 * negative prompt the negative conditioning is zeros, as `force_zeros_for_empty_prompt` says).
 */
Deno.test("a converted SDXL folder served by the server gives diffusers' image within 2/255", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/sdxl.manifest.json`));
  const reference = parseSafetensors(await Deno.readFile(`${DATA}/sdxl.reference.safetensors`))
    .tensors;
  const tmp = await Deno.makeTempDir();
  try {
    await convert(`${DATA}/sdxl`, `${tmp}/model`);
    const server = await startServer(["--model", `${tmp}/model`, "--device", "cpu"]);
    try {
      const generate = async (fields: Record<string, unknown>) => {
        const res = await fetch(`${server.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ seed: 42, response_format: "b64_json", ...fields }),
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        return decode(Uint8Array.from(atob(body.data[0].b64_json), (c) => c.charCodeAt(0)));
      };
      const models = await (await fetch(`${server.url}/v1/models`)).json();
      assert.equal(models.data[0].family, "StableDiffusionXLPipeline", JSON.stringify(models));
      for (const name of ["pipeline_cfg1", "pipeline_cfg5"]) {
        const { call, outputs } = manifest.pipelines[name];
        const fields = {
          prompt: call.prompt,
          size: `${call.width}x${call.height}`,
          num_inference_steps: call.num_inference_steps,
          guidance_scale: call.guidance_scale,
        };
        const png = await generate(fields);
        assert.deepEqual([png.width, png.height, png.channels], [call.width, call.height, 3]);
        const image = tensorToFloat32(reference.get(outputs.image)!);
        let worst = 0, unequal = 0;
        for (let i = 0; i < image.length; i++) {
          worst = Math.max(worst, Math.abs(png.data[i] - image[i] * 255));
          // diffusers' own 8-bit image: `(image * 255).round()`.
          if (png.data[i] !== Math.round(image[i] * 255)) unequal++;
        }
        console.log(
          `${name}: max difference ${
            worst.toFixed(3)
          }/255 from diffusers' float image; ${unequal} of ${image.length} 8-bit values differ from its rounding`,
        );
        assert.ok(worst <= 2, `${name}: ${worst}/255`);
        if (call.guidance_scale > 1) {
          // An explicit empty negative prompt is encoded, not zeroed: another image.
          const encoded = await generate({ ...fields, negative_prompt: "" });
          assert.ok(
            encoded.data.some((v, i) => v !== png.data[i]),
            "negative_prompt '' gave the zeroed negative's image",
          );
        }
      }
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
