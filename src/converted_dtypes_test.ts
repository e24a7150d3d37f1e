import assert from "node:assert/strict";
import { convert } from "../compute/convert/mod.ts";
import {
  imageDifference,
  REFERENCE_DATA,
  referenceCalls,
  requestImage,
} from "../fixtures/reference/served.ts";
import { startServer } from "./test_server.ts";

/**
 * The largest difference from diffusers' float image (in 1/255) each `--dtype` is allowed, per
 * tiny reference folder: the measured worst case (sd15 0.60, 2.43, 19.44; zimage 0.75, 8.25,
 * 60.54; qwenimage 1.98, 9.62, 32.10 with true CFG 4), rounded up (README, "Converting diffusers checkpoints"). These networks are 32 wide, so
 * a q4 block of 32 is a whole row: errors at real widths are not these. fp32's 2/255 is
 * `converted_models_test.ts`'.
 */
const TOLERANCE: Record<string, Record<string, number>> = {
  sd15: { fp16: 1, q8: 3, q4: 24 },
  zimage: { fp16: 1, q8: 10, q4: 64 },
  qwenimage: { fp16: 2.5, q8: 12, q4: 40 },
};

/** The operator each dtype's graphs read their weights through. */
const OPERATOR: Record<string, string> = {
  fp16: "Cast",
  q8: "DequantizeLinear",
  q4: "MatMulNBits",
};

/** The denoiser of each folder. */
const DENOISER: Record<string, string> = {
  sd15: "unet",
  zimage: "transformer",
  qwenimage: "transformer",
};

/** The call of each folder's manifest that is replayed (the one with classifier-free guidance). */
const CALL: Record<string, string> = {
  sd15: "pipeline_cfg7_5",
  zimage: "pipeline_cfg5",
  qwenimage: "pipeline_cfg4",
};

for (const [family, tolerances] of Object.entries(TOLERANCE)) {
  Deno.test(`a tiny ${family} folder converted at fp16, q8 and q4 and served draws diffusers' image within each dtype's stated tolerance`, async (t) => {
    const call = (await referenceCalls(family)).find((c) => c.name === CALL[family])!;
    const tmp = await Deno.makeTempDir();
    try {
      for (const [dtype, tolerance] of Object.entries(tolerances)) {
        await t.step(dtype, async () => {
          await convert(`${REFERENCE_DATA}${family}`, `${tmp}/${dtype}`, { dtype });
          // The model's protobuf (weights are in model.onnx_data) names each node's operator.
          const graph = await Deno.readTextFile(`${tmp}/${dtype}/${DENOISER[family]}/model.onnx`);
          assert.ok(graph.includes(OPERATOR[dtype]), `${dtype}: no ${OPERATOR[dtype]} node`);
          const server = await startServer(["--model", `${tmp}/${dtype}`, "--device", "cpu"]);
          try {
            const png = await requestImage(server.url, call.fields);
            const { worst, mean } = imageDifference(png.data, call.image);
            console.log(
              `${family} ${dtype}: max difference ${worst.toFixed(2)}/255, mean ${
                mean.toFixed(2)
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
