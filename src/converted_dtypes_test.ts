import assert from "node:assert/strict";
import { decode } from "fast-png";
import { convert, parseSafetensors, tensorToFloat32 } from "../compute/convert/mod.ts";
import { mentions } from "../compute/graph/model_bytes.ts";
import { startServer } from "./test_server.ts";

const DATA = new URL("../fixtures/reference/data/", import.meta.url).pathname;

/**
 * The largest difference from diffusers' float image (in 1/255) each `--dtype` is allowed, per
 * tiny reference folder: the measured worst case (sd15 0.60, 1.99, 17.44; zimage 0.75, 8.25,
 * 60.54), rounded up (README, "Converting diffusers checkpoints"). These networks are 32 wide, so
 * a q4 block of 32 is a whole row: errors at real widths are not these. fp32's 2/255 is
 * `converted_model_test.ts`' and `converted_z_image_test.ts`'.
 */
const TOLERANCE: Record<string, Record<string, number>> = {
  sd15: { fp16: 1, q8: 3, q4: 20 },
  zimage: { fp16: 1, q8: 10, q4: 64 },
};

/** The operator each dtype's graphs read their weights through. */
const OPERATOR: Record<string, string> = {
  fp16: "Cast",
  q8: "DequantizeLinear",
  q4: "MatMulNBits",
};

/** The denoiser of each folder. */
const DENOISER: Record<string, string> = { sd15: "unet", zimage: "transformer" };

/** The call of each folder's manifest that is replayed (the one with classifier-free guidance). */
const CALL: Record<string, string> = { sd15: "pipeline_cfg7_5", zimage: "pipeline_cfg5" };

for (const [family, tolerances] of Object.entries(TOLERANCE)) {
  Deno.test(`a tiny ${family} folder converted at fp16, q8 and q4 and served draws diffusers' image within each dtype's stated tolerance`, async (t) => {
    const manifest = JSON.parse(await Deno.readTextFile(`${DATA}/${family}.manifest.json`));
    const reference = parseSafetensors(
      await Deno.readFile(`${DATA}/${family}.reference.safetensors`),
    ).tensors;
    const { call, outputs } = manifest.pipelines[CALL[family]];
    const image = tensorToFloat32(reference.get(outputs.image)!);
    const tmp = await Deno.makeTempDir();
    try {
      for (const [dtype, tolerance] of Object.entries(tolerances)) {
        await t.step(dtype, async () => {
          await convert(`${DATA}/${family}`, `${tmp}/${dtype}`, { dtype });
          const graph = await Deno.readFile(`${tmp}/${dtype}/${DENOISER[family]}/model.onnx`);
          assert.ok(mentions(graph, OPERATOR[dtype]), `${dtype}: no ${OPERATOR[dtype]} node`);
          const server = await startServer(["--model", `${tmp}/${dtype}`, "--device", "cpu"]);
          try {
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
            const png = decode(
              Uint8Array.from(atob(body.data[0].b64_json), (c) => c.charCodeAt(0)),
            );
            let worst = 0, sum = 0;
            for (let i = 0; i < image.length; i++) {
              const d = Math.abs(png.data[i] - image[i] * 255);
              worst = Math.max(worst, d);
              sum += d;
            }
            console.log(
              `${family} ${dtype}: max difference ${worst.toFixed(2)}/255, mean ${
                (sum / image.length).toFixed(2)
              }/255 from diffusers' fp32 image`,
            );
            assert.ok(worst <= tolerance, `${family} ${dtype}: ${worst}/255 > ${tolerance}/255`);
          } finally {
            await server.stop();
          }
        });
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}
