/**
 * `deno task score:autoencoder [--n 200] [--model DIR]`: the ceiling the autoencoder puts on
 * `deno task score`. Renders `n` random scenes with training/scenes.py (perfect pictures), sends
 * each through the model's own `vae_encoder` and `vae_decoder` ONNX graphs (no diffusion), and
 * prints what the scene checker reads in the renders and in their round trips. A diffusion model
 * that drew perfect latents would still score no better than the round trip.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { readFloat32 } from "../compute/backends/backend.ts";
import { createNodeBackend } from "../compute/backends/onnxruntime_node.ts";
import type { RgbImage } from "../compute/mod.ts";
import { readImage } from "./judge.ts";
import { type Expectation, formatScore, judge, readScene, score } from "./scene_check.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** HWC uint8 → CHW float in [−1, 1], and back. */
function toPlanar(img: RgbImage): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[c * n + i] = img.data[i * 3 + c] / 127.5 - 1;
  }
  return out;
}
function fromPlanar(x: Float32Array, width: number, height: number): RgbImage {
  const n = width * height;
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      data[i * 3 + c] = Math.round(Math.min(1, Math.max(-1, x[c * n + i])) * 127.5 + 127.5);
    }
  }
  return { width, height, data };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      n: { type: "string", default: "200" },
      model: { type: "string", default: `${ROOT}models/shapes-tiny` },
    },
  });
  const dir = await Deno.makeTempDir({ prefix: "denoise-renders-" });
  try {
    const render = await new Deno.Command("/usr/bin/python3", {
      args: [`${ROOT}training/scenes.py`, "--renders", dir, values.n],
      stderr: "inherit",
    }).output();
    if (!render.success) throw new Error("training/scenes.py --renders failed");
    const truth: { file: string; expect: Expectation }[] = JSON.parse(
      await Deno.readTextFile(`${dir}/truth.json`),
    );
    const backend = createNodeBackend();
    const encoder = await backend.createSession({ path: `${values.model}/vae_encoder/model.onnx` });
    const decoder = await backend.createSession({ path: `${values.model}/vae_decoder/model.onnx` });
    const rendered = [], roundTrip = [];
    for (const { file, expect } of truth) {
      const img = await readImage(`${dir}/${file}`);
      rendered.push(judge(expect, readScene(img)));
      const enc = await encoder.run({
        sample: backend.tensor("float32", toPlanar(img), [1, 3, img.height, img.width]),
      });
      // `latent_parameters` is (mean, log-variance); the decoder takes the mean.
      const [, twice, h, w] = enc.latent_parameters.dims;
      const mean = (await readFloat32(enc.latent_parameters)).slice(0, (twice / 2) * h * w);
      const dec = await decoder.run({
        latent_sample: backend.tensor("float32", mean, [1, twice / 2, h, w]),
      });
      const out = fromPlanar(await readFloat32(dec.sample), img.width, img.height);
      roundTrip.push(judge(expect, readScene(out)));
    }
    await encoder.release();
    await decoder.release();
    console.log(`${truth.length} rendered scenes (training/scenes.py), read by the checker:`);
    console.log(formatScore(score(rendered)));
    console.log(`\nthe same scenes through ${values.model}'s vae_encoder → vae_decoder:`);
    console.log(formatScore(score(roundTrip)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
