/**
 * `deno task bench:cache [--steps 8,20] [--config JSON] [--size 64] [--repeat N]`: step caching's
 * wall time on the realistic-width DiT blocks of `bench:realistic` (two of Z-Image's blocks, dim
 * 3840, random weights, built at bench time into a temporary folder): per step count, the
 * denoising loop with every step in full, then with the step cache, alternating `--repeat` times
 * and keeping each one's best.
 *
 * Random weights make no trajectory and no meaningful signal: their adaLN modulation swings with
 * every change of the timestep embedding (the modulated input changes by 0.5–0.7 of itself per
 * step, so TeaCache would cache nothing at any useful threshold), while a trained model's changes
 * smoothly. So the decisions come from a trained model: the embedded shapes-tiny, run here on the
 * README grid's 8 prompts × 2 seeds at the same step count and cache settings (each also in
 * full, for the embedded model's own wall times); the loop replays the median of those runs'
 * patterns (by steps cached). The DiT loop runs the real signal
 * sub-graph cut from the DiT on every step the policy asks it for, and the network on every step
 * not cached; with `enable_taylorseer`, a cached step also does TaylorSeer's work (x̂₀ of every
 * full step, the extrapolation and the output from it, as ../pipelines/step_cache.ts does). Its
 * inputs follow the flow-matching path `x = (1 − σ)·x₀ + σ·ε` between a fixed
 * pattern and fixed noise at `σ = 1 − i/steps`; the output is not fed back. What this measures is
 * the wall time at a trained model's cache rate, the signal's cost included; the images' quality
 * at those settings is measured on the embedded model (`deno task score --cache`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { selectBackend } from "../backends/device.ts";
import { readFloat32 } from "../backends/backend.ts";
import { Z_IMAGE_DIT, zImageDit } from "../networks/z_image_dit.ts";
import { SignalGraph } from "../pipelines/signal_graph.ts";
import {
  extrapolate,
  type FullOutput,
  parseCacheConfig,
  StepCachePolicy,
} from "../pipelines/step_cache.ts";
import { findModelCard } from "../registry.ts";
import { loadPipeline } from "../load.ts";
import { Mt19937, randnFrom } from "../random.ts";
import { randomWeights } from "./random_weights.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "8,20" },
    config: { type: "string", default: '{"backend":"tea_cache"}' },
    size: { type: "string", default: "64" },
    repeat: { type: "string", default: "1" },
  },
});
const SIZE = Number(values.size);
const TOKENS = (SIZE / 2) ** 2 + 128;
const { dim, adalnWidth, heads } = Z_IMAGE_DIT;
const HEAD = dim / heads;
const config = parseCacheConfig(JSON.parse(values.config!));
if (config.backend === "none") throw new Error("--config: give a backend");
const STEPS = values.steps!.split(",").map(Number);
const REPEAT = Number(values.repeat);

/** The README grid's prompts. */
const PROMPTS = [
  "a red circle on a blue background",
  "a large yellow star in the top left on a black background",
  "two green triangles on a white background",
  "a small purple heart in the bottom right on an orange background",
  "a white ring on a red background",
  "three blue squares on a yellow background",
  "an orange triangle at the bottom on a purple background",
  "a black star on the right on a green background",
];

/** The median (by steps cached) of the embedded model's cache patterns at `steps`. */
async function trainedPatterns(): Promise<Map<number, string>> {
  const shapes = new URL("../../models/shapes-tiny", import.meta.url).pathname;
  const p = await loadPipeline(shapes, {
    device: "cpu",
    defaults: findModelCard("denoise/shapes-tiny")!.defaults,
  });
  const out = new Map<number, string>();
  for (const steps of STEPS) {
    const patterns: string[] = [];
    // Each prompt and seed in full, then cached: the embedded model's own wall times.
    let fullMs = 0, cachedMs = 0;
    for (const prompt of PROMPTS) {
      for (const seed of [42, 43]) {
        let t = performance.now();
        await p.generate({ prompt, seed, steps });
        fullMs += performance.now() - t;
        let pattern = "";
        t = performance.now();
        await p.generate({
          prompt,
          seed,
          steps,
          cache: config,
          onStep: (s) => pattern += s.cached ? "c" : ".",
        });
        cachedMs += performance.now() - t;
        patterns.push(pattern);
      }
    }
    const count = (x: string) => x.split("c").length - 1;
    patterns.sort((a, b) => count(a) - count(b));
    out.set(steps, patterns[patterns.length >> 1]);
    const n = patterns.length;
    console.log(
      `shapes-tiny (256², guidance 2) at ${steps} steps: steps cached per image ${
        patterns.map(count).join(" ")
      }; wall time per image ${(fullMs / n).toFixed(0)} ms in full, ${
        (cachedMs / n).toFixed(0)
      } ms cached (${(fullMs / cachedMs).toFixed(2)}×)`,
    );
  }
  await p.release();
  return out;
}
const patterns = await trainedPatterns();

const dir = await Deno.makeTempDir({ prefix: "denoise-cache-bench-" });
try {
  const weights = randomWeights(`${dir}/model.onnx_data`, "model.onnx_data", "fp32", 1517);
  const { graph } = zImageDit(Z_IMAGE_DIT, 1517, TOKENS, 1, weights);
  await Deno.writeFile(
    `${dir}/model.onnx`,
    graph.serialize({ externalData: "model.onnx_data" }).model,
  );
  weights.close();
  const backend = await selectBackend("cpu");
  const session = await backend.createSession({
    path: `${dir}/model.onnx`,
    externalDataPath: `${dir}/model.onnx_data`,
  });
  const signal = await SignalGraph.open(backend, `${dir}/model.onnx`, config.backend);
  if (!signal) throw new Error("no signal tensor in the DiT");
  const generator = new Mt19937(7n);
  const noise = randnFrom(generator, [TOKENS, dim]);
  const clean = Float32Array.from({ length: TOKENS * dim }, (_, i) => Math.sin(i * 0.37));
  const rope = Float32Array.from({ length: TOKENS * HEAD }, (_, i) => i * 0.37 % 6.283);
  const sample = (sigma: number) => clean.map((c, i) => (1 - sigma) * c + sigma * noise[i]);
  // The image's latents: 16 channels at SIZE² (what TaylorSeer works on in a real run).
  const latentSample = (sigma: number) =>
    clean.subarray(0, 16 * SIZE * SIZE).map((c, i) => (1 - sigma) * c + sigma * noise[i]);
  const feeds = (sigma: number) => {
    const x = sample(sigma);
    // Sinusoids of t = 1000·σ, half cos and half sin, as a timestep embedding.
    const half = adalnWidth / 2;
    const t = 1000 * sigma;
    const emb = Float32Array.from({ length: adalnWidth }, (_, k) => {
      const f = Math.exp(-Math.log(10000) * (k % half) / half);
      return k < half ? Math.cos(t * f) : Math.sin(t * f);
    });
    return {
      hidden_states: backend.tensor("float32", x, [1, TOKENS, dim]),
      adaln_input: backend.tensor("float32", emb, [1, adalnWidth]),
      rope_cos: backend.tensor("float32", rope.map(Math.cos), [TOKENS, 1, HEAD]),
      rope_sin: backend.tensor("float32", rope.map(Math.sin), [TOKENS, 1, HEAD]),
    };
  };
  const forward = async (sigma: number) => {
    const out = await session.run(feeds(sigma));
    const v = await readFloat32(out.out);
    out.out.dispose();
    return v;
  };
  await forward(1); // warm-up
  console.log(
    `# Step caching on two realistic-width Z-Image DiT blocks (dim ${dim}, ${TOKENS} tokens), ` +
      `${backend.description}\n\ncache: ${
        JSON.stringify(config)
      }; signal sub-graph: ${`${signal.cut.nodes} of ${signal.cut.ofNodes} nodes`}\n`,
  );
  console.log(
    "| steps | full: s | cached: s (of it in the network) | speed-up | network calls | signal calls | shapes-tiny's median pattern |",
  );
  console.log(
    "| ----- | ------- | -------------------------------- | -------- | ------------- | ------------ | ----------------------------- |",
  );
  for (const steps of STEPS) {
    const sigmas = Array.from({ length: steps }, (_, i) => 1 - i / steps);
    const pattern = patterns.get(steps)!;
    const policy = new StepCachePolicy(config, steps);
    const full = async () => {
      for (const s of sigmas) await forward(s);
    };
    // What the cached loop spends in the network, the rest being the signal and TaylorSeer's work.
    let calls = 0, signals = 0, networkS = 0;
    const cached = async () => {
      calls = signals = networkS = 0;
      let points: FullOutput[] = [];
      for (let i = 0; i < steps; i++) {
        const sigma = sigmas[i];
        if (policy.wantsSignal(i)) {
          await signal!.run(feeds(sigma));
          signals++;
        }
        if (pattern[i] === ".") {
          const t = performance.now();
          const v = await forward(sigma);
          networkS += (performance.now() - t) / 1000;
          calls++;
          if (!config.taylorseer) continue;
          // Flow matching: x̂₀ = x − σ·v, and back v = (x − x̂₀)/σ; on the latents' size (the
          // blocks' output is the hidden states, about 68× the latents).
          const x = latentSample(sigma);
          points = [{ t: 1000 * sigma, output: x.map((xi, k) => xi - sigma * v[k]) }, ...points]
            .slice(0, config.taylorseer + 1);
        } else if (config.taylorseer) {
          // The velocity a cached step hands the scheduler (not fed back, as above).
          const x0 = extrapolate(points, 1000 * sigma);
          latentSample(sigma).map((xi, k) => (xi - x0[k]) / sigma);
        }
      }
    };
    // Full and cached loops alternate; each keeps its best run (noise only slows a run down).
    let fullS = Infinity, cachedS = Infinity, cachedNetworkS = 0;
    for (let r = 0; r < REPEAT; r++) {
      for (
        const [loop, keep] of [[full, (s: number) => fullS = Math.min(fullS, s)], [
          cached,
          (s: number) => {
            if (s < cachedS) [cachedS, cachedNetworkS] = [s, networkS];
          },
        ]] as const
      ) {
        const t = performance.now();
        await loop();
        keep((performance.now() - t) / 1000);
      }
    }
    console.log(
      `| ${steps} | ${fullS.toFixed(1)} | ${cachedS.toFixed(1)} (${cachedNetworkS.toFixed(1)}) | ${
        (fullS / cachedS).toFixed(2)
      }× | ` +
        `${calls} of ${steps} | ${signals} | \`${pattern}\` |`,
    );
  }
  await signal.release();
  await session.release();
} finally {
  await Deno.remove(dir, { recursive: true });
}
