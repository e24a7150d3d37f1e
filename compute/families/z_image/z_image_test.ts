import assert from "node:assert/strict";
import { loadPipeline } from "../../load.ts";
import { zImageGuidance } from "./z_image.ts";

const ZIMAGE = new URL("../../../fixtures/models/z-image-turbo-tiny", import.meta.url).pathname;

Deno.test("Z-Image CFG is pos + g·(pos − neg), clipped to ‖pos‖·c with normalisation", () => {
  const pos = Float32Array.of(1, 0), neg = Float32Array.of(0, 1);
  assert.deepEqual(zImageGuidance(pos, neg, 2, 0), Float32Array.of(3, -2));
  const clipped = zImageGuidance(pos, neg, 2, 1.5);
  assert.ok(Math.abs(Math.hypot(clipped[0], clipped[1]) - 1.5) < 1e-6);
  assert.ok(Math.abs(clipped[0] / clipped[1] - 3 / -2) < 1e-6);
});

Deno.test("Z-Image fixture: Turbo defaults, deterministic per seed, CFG only when guidance > 0, truncation and normalisation", async () => {
  const p = await loadPipeline(ZIMAGE, { device: "cpu" });
  try {
    assert.deepEqual(p.defaults, { width: 1024, height: 1024, steps: 8, guidanceScale: 0 });
    const base = { prompt: "a red cat", width: 64, height: 32, seed: 42 };
    const a = await p.generate(base),
      b = await p.generate(base),
      c = await p.generate({ ...base, seed: 43 });
    assert.equal(a.steps, 8);
    assert.equal(a.width, 64);
    assert.deepEqual(a.images[0].data, b.images[0].data);
    assert.notDeepEqual(a.images[0].data, c.images[0].data);
    // guidance 0 (Turbo): the negative prompt has no effect; guidance 3 uses it.
    assert.deepEqual(
      a.images[0].data,
      (await p.generate({ ...base, negativePrompt: "blurry" })).images[0].data,
    );
    const g = await p.generate({ ...base, guidanceScale: 3 });
    const gNeg = await p.generate({ ...base, guidanceScale: 3, negativePrompt: "blurry" });
    assert.notDeepEqual(g.images[0].data, a.images[0].data);
    assert.notDeepEqual(g.images[0].data, gNeg.images[0].data);
    // cfg_truncation 0 keeps guidance on the first step only (1 − σ = 0 there); normalisation
    // clips each guided prediction. Both change the picture; defaults (1, off) change nothing.
    const guided = { ...base, guidanceScale: 3, negativePrompt: "blurry" };
    const truncated = await p.generate({ ...guided, cfgTruncation: 0 });
    assert.notDeepEqual(truncated.images[0].data, gNeg.images[0].data);
    assert.notDeepEqual(truncated.images[0].data, a.images[0].data);
    const explicitDefaults = await p.generate({ ...guided, cfgTruncation: 1, cfgNormalization: 0 });
    assert.deepEqual(explicitDefaults.images[0].data, gNeg.images[0].data);
    const normalised = await p.generate({ ...guided, cfgNormalization: 0.5 });
    assert.notDeepEqual(normalised.images[0].data, gNeg.images[0].data);
    await assert.rejects(() => p.generate({ ...guided, cfgTruncation: 2 }), RangeError);
    await assert.rejects(() => p.generate({ ...base, height: 40 }), /multiple of 16/);
  } finally {
    await p.release();
  }
});
