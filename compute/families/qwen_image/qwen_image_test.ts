import assert from "node:assert/strict";
import { ModelLoadError } from "../../errors.ts";
import { torchRandn } from "../../random.ts";
import { loadPipeline } from "../../load.ts";
import { packLatents, unpackLatents } from "../../pipelines/latent_packing.ts";
import { trueCfg } from "./qwen_image.ts";

const QWEN = new URL("../../../fixtures/models/qwen-image-tiny", import.meta.url).pathname;

Deno.test("packLatents puts channel c, offset (dy,dx) at feature c·4+dy·2+dx and unpack inverts it", () => {
  const [b, c, h, w] = [2, 16, 4, 6];
  const x = torchRandn([b, c, h, w], 0);
  const p = packLatents(x, b, c, h, w);
  // batch 1, channel 5, row 3, column 4 → token (1, 2) of a 2×3 grid, feature 5·4 + 1·2 + 0.
  const token = 1 * (w / 2) + 2, feature = 5 * 4 + 1 * 2 + 0;
  assert.equal(
    p[(1 * (h / 2) * (w / 2) + token) * c * 4 + feature],
    x[((1 * c + 5) * h + 3) * w + 4],
  );
  assert.deepEqual(unpackLatents(p, b, c, h, w), x);
  assert.throws(() => packLatents(x, 1, 1, 3, 4), RangeError);
});

Deno.test("true CFG rescales each token of the combination to the norm of the conditional", () => {
  const cond = Float32Array.of(3, 4, 0, 1), neg = Float32Array.of(1, 0, 0, 0);
  const out = trueCfg(cond, neg, 4, 2);
  // token 0: comb = (1,0) + 4·((3,4) − (1,0)) = (9,16); rescaled to |(3,4)| = 5.
  const n0 = Math.hypot(9, 16);
  assert.ok(Math.abs(out[0] - 9 * 5 / n0) < 1e-5 && Math.abs(out[1] - 16 * 5 / n0) < 1e-5);
  assert.ok(Math.abs(Math.hypot(out[2], out[3]) - 1) < 1e-6);
});

Deno.test("Qwen-Image fixture: deterministic per seed, sizes floor to 16, true CFG uses the negative prompt", async () => {
  const p = await loadPipeline(QWEN, { device: "cpu" });
  try {
    assert.equal(p.defaults.trueCfgScale, 4);
    const base = { prompt: "a red cat", width: 64, height: 48, steps: 4, seed: 42 };
    const a = await p.generate(base),
      b = await p.generate(base),
      c = await p.generate({ ...base, seed: 43 });
    assert.equal(a.width, 64);
    assert.equal(a.height, 48);
    assert.deepEqual(a.images[0].data, b.images[0].data);
    assert.notDeepEqual(a.images[0].data, c.images[0].data);
    const neg = await p.generate({ ...base, negativePrompt: "blurry" });
    assert.notDeepEqual(a.images[0].data, neg.images[0].data);
    // true_cfg_scale ≤ 1 turns CFG off: the negative prompt no longer matters.
    const off = await p.generate({ ...base, trueCfgScale: 1 });
    assert.deepEqual(
      off.images[0].data,
      (await p.generate({ ...base, trueCfgScale: 1, negativePrompt: "blurry" })).images[0].data,
    );
    const two = await p.generate({ ...base, n: 2 });
    assert.notDeepEqual(two.images[0].data, two.images[1].data);
    await assert.rejects(() => p.generate({ ...base, width: 56 }), /multiple of 16/);
  } finally {
    await p.release();
  }
});

Deno.test("Qwen-Image fixture runs on WASM with the same image as native CPU (within 3/255)", async () => {
  const opts = { prompt: "a blue dog", width: 32, height: 32, steps: 2, seed: 5 };
  const images: Uint8Array[] = [];
  for (const device of ["cpu", "wasm"] as const) {
    const p = await loadPipeline(QWEN, { device });
    images.push((await p.generate(opts)).images[0].data);
    await p.release();
  }
  const maxDiff = images[0].reduce((m, v, i) => Math.max(m, Math.abs(v - images[1][i])), 0);
  assert.ok(maxDiff <= 3, `max diff ${maxDiff}`);
});

Deno.test("a Qwen-Image VAE config without latents_mean/std is a ModelLoadError naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await new Deno.Command("cp", { args: ["-r", `${QWEN}/.`, dir] }).output();
    await Deno.writeTextFile(`${dir}/vae_decoder/config.json`, JSON.stringify({ z_dim: 16 }));
    await assert.rejects(
      () => loadPipeline(dir, { device: "cpu" }),
      (e: Error) =>
        e instanceof ModelLoadError &&
        /vae_decoder\/config\.json: expected latents_mean and latents_std of 16 values/.test(
          e.message,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
