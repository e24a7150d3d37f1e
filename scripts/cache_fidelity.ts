/**
 * `deno run -A scripts/cache_fidelity.ts [--steps 20] [--config JSON;JSON…]`: how far a cached
 * run's image is from the uncached one on the fidelity checkpoints (fixtures/reference/data: tiny
 * random diffusers checkpoints of SD 1.x, SDXL and Z-Image, converted here by our converter into
 * a temporary folder), per cache setting: steps cached, and the mean and largest |Δ| of the
 * 8-bit pixels. Random weights have no trained trajectory, so this checks that caching runs on
 * every family's real graph layout and bounds what it changes there; quality is measured on the
 * embedded model (`deno task score --cache`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { convert } from "../compute/convert/mod.ts";
import { loadPipeline, parseCacheConfig } from "../compute/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "20" },
    config: {
      type: "string",
      default: '{"backend":"tea_cache"};{"backend":"cache_dit"}',
    },
  },
});
const DATA = new URL("../fixtures/reference/data", import.meta.url).pathname;
const configs = values.config.split(";").map((c) => parseCacheConfig(JSON.parse(c)));
const steps = Number(values.steps);
const tmp = await Deno.makeTempDir({ prefix: "denoise-cache-fidelity-" });
try {
  console.log("| checkpoint | cache | steps cached | mean \\|Δ\\| (of 255) | max \\|Δ\\| |");
  console.log("| ---------- | ----- | ------------ | ------------------ | --------- |");
  for (const family of ["sd15", "sdxl", "zimage"]) {
    await convert(`${DATA}/${family}`, `${tmp}/${family}`);
    const p = await loadPipeline(`${tmp}/${family}`, { device: "cpu" });
    const request = { prompt: "a photo of a cat", seed: 1, steps, width: 64, height: 64 };
    const plain = await p.generate(request);
    for (const cache of configs) {
      const r = await p.generate({ ...request, cache });
      const [a, b] = [plain.images[0].data, r.images[0].data];
      let sum = 0, max = 0;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i]);
        sum += d;
        max = Math.max(max, d);
      }
      console.log(
        `| ${family} | ${JSON.stringify(cache)} | ${r.timings.cachedSteps} of ${steps} | ${
          (sum / a.length).toFixed(2)
        } | ${max} |`,
      );
    }
    await p.release();
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}
