import assert from "node:assert/strict";
import { ApiError } from "../../errors.ts";
import { FAKE_MODEL, testConfig } from "../../testing.ts";
import { autoSize, checkImageCount, editSteps } from "./plan.ts";
import { dataUrlBytes } from "./read.ts";

Deno.test("autoSize: the input's size in the model's multiple, scaled down to the pixel limit", () => {
  assert.equal(autoSize({ width: 256, height: 256 }, 8, 1024 ** 2), "256x256");
  assert.equal(autoSize({ width: 250, height: 123 }, 8, 1024 ** 2), "248x120");
  assert.equal(autoSize({ width: 3, height: 5 }, 16, 1024 ** 2), "16x16"); // at least one multiple
  // 2048x1024 at 1024²: scaled by 1/√2 to 1448.2x724.1, rounded to multiples of 16 (within it).
  assert.equal(autoSize({ width: 2048, height: 1024 }, 16, 1024 ** 2), "1456x720");
  // Within the limit, but rounding would pass it (1024² > 1020²): both sides go down instead.
  assert.equal(autoSize({ width: 1020, height: 1020 }, 8, 1020 ** 2), "1016x1016");
});

Deno.test("checkImageCount: a model without an encoder, or too many images, is a 400", () => {
  const config = testConfig();
  checkImageCount(1, FAKE_MODEL, config);
  assert.throws(
    () => checkImageCount(1, { ...FAKE_MODEL, maxEditImages: 0 }, config),
    (e: ApiError) => e.status === 400 && e.options.code === "model_cannot_edit",
  );
  assert.throws(
    () => checkImageCount(3, FAKE_MODEL, config),
    (e: ApiError) => e.status === 400 && /Received 3 input images/.test(e.message),
  );
});

Deno.test("dataUrlBytes: base64 data URLs only; others are 400s naming the field", () => {
  assert.deepEqual([...dataUrlBytes("data:image/png;base64,AQID", "images[0]")], [1, 2, 3]);
  assert.deepEqual([...dataUrlBytes("data:;base64, AQID\n", "x")], [1, 2, 3]);
  for (const url of ["https://x/a.png", "data:image/png,abc", "data:image/png;base64,***"]) {
    assert.throws(
      () => dataUrlBytes(url, "images[0]"),
      (e: ApiError) => e.status === 400 && e.options.param === "images[0]",
    );
  }
});

Deno.test("editSteps: the default, raised until strength of it is at least one step", () => {
  assert.equal(editSteps(50, 0.8), 50);
  assert.equal(editSteps(1, 0.8), 2);
  assert.equal(editSteps(1, 0.5), 2);
  assert.equal(editSteps(1, 0.3), 4);
  assert.equal(editSteps(2, 0.1), 10);
  assert.equal(editSteps(1, 1), 1);
  // Too small a strength for any request's steps (or none at all): left to the pipeline's 400.
  assert.equal(editSteps(1, 0.001), 1);
  assert.equal(editSteps(8, Number.MIN_VALUE), 8);
  assert.equal(editSteps(8, 0), 8);
});
