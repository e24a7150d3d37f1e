import assert from "node:assert/strict";
import { decode } from "fast-png";
import { convert, parseSafetensors, tensorToFloat32 } from "../compute/convert/mod.ts";
import { startServer } from "./test_server.ts";

const DATA = new URL("../fixtures/reference/data/", import.meta.url).pathname;

/**
 * A model converted from diffusers' tiny Z-Image folder (ZImageTransformer2DModel, Qwen3 text
 * encoder, 16-channel VAE, slow Qwen2 tokenizer files), served as a user serves it, draws
 * diffusers' own image for the same calls (prompt, seed 42, 4 steps, 64×64, guidance 0 and 5).
 */
Deno.test("a converted Z-Image folder served by the server gives diffusers' image within 2/255", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/zimage.manifest.json`));
  const reference = parseSafetensors(await Deno.readFile(`${DATA}/zimage.reference.safetensors`))
    .tensors;
  const tmp = await Deno.makeTempDir();
  try {
    await convert(`${DATA}/zimage`, `${tmp}/model`);
    const server = await startServer(["--model", `${tmp}/model`, "--device", "cpu"]);
    try {
      for (const name of ["pipeline_cfg0", "pipeline_cfg5"]) {
        const { call, outputs } = manifest.pipelines[name];
        const res = await fetch(`${server.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            prompt: call.prompt,
            size: `${call.width}x${call.height}`,
            seed: 42,
            num_inference_steps: call.num_inference_steps,
            guidance_scale: call.guidance_scale,
            response_format: "b64_json",
          }),
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        const png = decode(Uint8Array.from(atob(body.data[0].b64_json), (c) => c.charCodeAt(0)));
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
      }
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
