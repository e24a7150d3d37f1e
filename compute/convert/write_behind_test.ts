import assert from "node:assert/strict";
import { WriteBehindFile } from "./write_behind.ts";

Deno.test("a write-behind file holds every append in order, one larger than a slot included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pieces = [Uint8Array.of(1, 2, 3), new Uint8Array(70 * 2 ** 20), Uint8Array.of(9)];
    for (let i = 0; i < pieces[1].length; i += 4099) pieces[1][i] = i % 251;
    const file = new WriteBehindFile(`${dir}/data`);
    // The converter lends its buffers: each is overwritten as soon as append returns.
    for (const piece of pieces) {
      const lent = piece.slice();
      file.append(lent);
      lent.fill(0xff);
    }
    file.close();
    const written = await Deno.readFile(`${dir}/data`);
    const expected = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of pieces) expected.set(p, (at += p.length) - p.length);
    assert.equal(written.length, expected.length);
    assert.ok(written.every((b, i) => b === expected[i]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a write-behind file that cannot be written throws its error on the converter's thread", () => {
  const file = new WriteBehindFile("/nonexistent-folder/model.onnx_data");
  assert.throws(() => {
    file.append(Uint8Array.of(1));
    file.close();
  }, /No such file or directory|not found/i);
  file.close();
});
