import assert from "node:assert/strict";
import { InvalidInputError } from "../errors.ts";
import { Mt19937, torchRandn } from "../random.ts";
import {
  blendKnown,
  checkEdit,
  editStart,
  imagePixels,
  latentMask,
  sampleLatentDistribution,
} from "./edit.ts";

Deno.test("editStart truncates N·strength as diffusers' SD img2img, N − N·strength as its flow pipelines", () => {
  // diffusers: SD int(4·0.6) = 2 steps run (t_start 2); flow t_start = int(4 − 2.4) = 1: 3 steps.
  assert.equal(editStart(4, 0.6, "sd"), 2);
  assert.equal(editStart(4, 0.6, "flow"), 1);
  assert.equal(editStart(20, 0.7, "sd"), 6); // 20·0.7 = 14.000000000000002
  assert.equal(editStart(10, 0.3, "sd"), 7); // 10·0.3 = 3.0000000000000004
  assert.equal(editStart(4, 1, "sd"), 0);
  assert.equal(editStart(4, 0.2, "flow"), 3); // 0.8 of a step still runs one on a flow model
  assert.throws(() => editStart(4, 0.2, "sd"), InvalidInputError); // int(0.8) = 0 steps
  for (const bad of [0, -0.1, 1.01, NaN]) {
    assert.throws(() => editStart(4, bad, "sd"), /strength must be in \(0, 1\]/);
  }
});

Deno.test("checkEdit refuses an image or a mask of another size than the output", () => {
  const image = { width: 16, height: 8, data: new Uint8Array(16 * 8 * 3) };
  checkEdit({ image, strength: 0.5, mask: new Uint8Array(128) }, 16, 8);
  assert.throws(() => checkEdit({ image, strength: 0.5 }, 8, 16), /16×8, but the output is 8×16/);
  assert.throws(
    () => checkEdit({ image, strength: 0.5, mask: new Uint8Array(127) }, 16, 8),
    /mask is 127 bytes, expected one per pixel \(128\)/,
  );
  assert.throws(() => checkEdit({ image, strength: 0 }, 16, 8), InvalidInputError);
});

Deno.test("imagePixels maps bytes to [-1, 1] planes and zeroes repainted pixels", () => {
  const image = { width: 2, height: 1, data: Uint8Array.from([0, 255, 128, 10, 20, 30]) };
  const x = imagePixels(image);
  assert.deepEqual(Array.from(x), [
    -1,
    Math.fround(2 * Math.fround(10 / 255) - 1),
    1,
    Math.fround(2 * Math.fround(20 / 255) - 1),
    Math.fround(2 * Math.fround(128 / 255) - 1),
    Math.fround(2 * Math.fround(30 / 255) - 1),
  ]);
  const masked = imagePixels(image, Uint8Array.from([128, 127]));
  assert.deepEqual([masked[0], masked[2], masked[4]], [0, 0, 0]);
  assert.equal(masked[1], x[1]);
});

Deno.test("latentMask binarises at 128 and takes each cell's top-left pixel (nearest)", () => {
  const width = 16, height = 8, mask = new Uint8Array(width * height);
  mask[0 * width + 8] = 128; // cell (0, 1)'s top-left pixel
  mask[1 * width + 1] = 255; // inside cell (0, 0), not its top-left pixel
  assert.deepEqual(Array.from(latentMask(mask, width, height, 8)), [0, 1]);
});

Deno.test("sampleLatentDistribution is mean + exp(logvar/2)·randn from the generator", () => {
  const params = Float32Array.from([1, 2, 3, Math.log(4), -100, 100]); // mean 1,2,3; logvar clamped
  const z = sampleLatentDistribution(params, new Mt19937(5n));
  const eps = torchRandn([3], 5);
  assert.ok(Math.abs(z[0] - (1 + 2 * eps[0])) < 1e-6);
  assert.ok(Math.abs(z[1] - (2 + Math.exp(-15) * eps[1])) < 1e-6);
  assert.ok(Math.abs(z[2] - (3 + Math.exp(10) * eps[2])) < 1e-2);
});

Deno.test("blendKnown keeps `known` where the mask is 0 on every image and channel", () => {
  const latents = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]); // 2 images × 2 channels × 2 cells
  const known = new Float32Array(8).fill(-1);
  assert.deepEqual(Array.from(blendKnown(latents, known, Float32Array.from([1, 0]))), [
    1,
    -1,
    3,
    -1,
    5,
    -1,
    7,
    -1,
  ]);
});
