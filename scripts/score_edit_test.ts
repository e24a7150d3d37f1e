import assert from "node:assert/strict";
import { objectMask, planEdit } from "./score_edit.ts";
import type { HeldOutItem } from "./score.ts";

const item = (prompt: string, colour: string, shape: string, background: string): HeldOutItem => ({
  prompt,
  seed: 1,
  expect: { colour, shape, background },
});

Deno.test("planEdit changes one attribute in turn, keeping plurals and articles right", () => {
  const two = item("two small red triangles on a green background", "red", "triangle", "green");
  assert.deepEqual(planEdit(two, 0), {
    attribute: "colour",
    from: "red",
    to: "blue",
    prompt: "two small blue triangles on a green background",
  });
  assert.equal(planEdit(two, 1).prompt, "two small red circles on a green background");
  assert.equal(planEdit(two, 2).prompt, "two small red triangles on a blue background");
  const orange = item("an orange ring on a purple background", "orange", "ring", "purple");
  assert.equal(planEdit(orange, 0).prompt, "a red ring on a purple background");
  assert.equal(planEdit(orange, 2).prompt, "an orange ring on a red background");
  const large = item(
    "a large blue heart in the top right on a red background",
    "blue",
    "heart",
    "red",
  );
  assert.equal(
    planEdit(large, 3).prompt,
    "a large yellow heart in the top right on a red background",
  );
  // The new colour is never the other colour of the scene.
  for (let k = 0; k < 30; k += 3) assert.notEqual(planEdit(two, k).to, "green");
  const white = item("a white square on an orange background", "white", "square", "orange");
  assert.equal(
    planEdit(white, 5).prompt,
    "a white square on a green background",
  );
});

Deno.test("objectMask covers what is not the background, grown by the margin", () => {
  const [W, H] = [8, 4];
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) data.set([36, 72, 220], 3 * i); // blue
  data.set([220, 32, 32], 3 * (1 * W + 3)); // one red pixel at (3, 1)
  const mask = objectMask({ width: W, height: H, data }, "blue", 1);
  const set = [...mask.keys()].filter((i) => mask[i]).map((i) => [i % W, Math.floor(i / W)]);
  assert.deepEqual(set, [[2, 0], [3, 0], [4, 0], [2, 1], [3, 1], [4, 1], [2, 2], [3, 2], [4, 2]]);
});
