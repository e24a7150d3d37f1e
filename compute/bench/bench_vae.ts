/**
 * `deno run -A compute/bench/bench_vae.ts` (part of `deno task bench`): peak memory and time of the
 * VAE decode at 1024², n = 4, whole, sliced (the default) and tiled (`--vae-use-tiling`, image by
 * image), on the embedded shapes-tiny model (a real AutoencoderKL decoder, channels 16–64), native
 * CPU. Each setting runs in its own process, so its peak RSS (`VmHWM`) is its own. Prints markdown.
 *
 * @module
 */
import { loadPipeline } from "../load.ts";
import type { VaeDecodeSettings } from "../pipelines/vae_decode.ts";
import { peakRssMib } from "./bench_stats.ts";

const MODEL = new URL("../../models/shapes-tiny", import.meta.url).pathname;
const SETTINGS: Record<string, VaeDecodeSettings> = {
  whole: { slicing: false },
  "slicing (the default)": {},
  tiling: { tiling: true },
};
const OPTIONS = {
  prompt: "a red circle on a white background",
  seed: 3,
  width: 1024,
  height: 1024,
  n: 4,
  steps: 1,
};

if (Deno.args[0] === "--child") {
  // One setting: load, then decode; report the decode time, peak RSS and the pixels' digest.
  const pipeline = await loadPipeline(MODEL, { device: "cpu", vae: SETTINGS[Deno.args[1]] });
  const before = await peakRssMib();
  const result = await pipeline.generate(OPTIONS);
  const pixels = result.images.map((i) => i.data);
  await Deno.writeFile(Deno.args[2], new Uint8Array(pixels.flatMap((p) => [...p])));
  console.log(JSON.stringify({
    decodeMs: result.timings.decodeMs,
    peakBefore: before,
    peak: await peakRssMib(),
  }));
} else {
  const dir = await Deno.makeTempDir();
  const rows = [];
  let whole: Uint8Array | undefined;
  for (const name of Object.keys(SETTINGS)) {
    const file = `${dir}/${name}.bin`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--child", name, file],
      stdout: "piped",
    }).output();
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    const pixels = await Deno.readFile(file);
    whole ??= pixels;
    let max = 0, sum = 0;
    for (let i = 0; i < pixels.length; i++) {
      const d = Math.abs(pixels[i] - whole[i]);
      max = Math.max(max, d);
      sum += d;
    }
    rows.push(
      `| ${name} | ${r.decodeMs.toFixed(0)} | ${r.peakBefore.toFixed(0)} | ${
        r.peak.toFixed(0)
      } | ${max} / ${(sum / pixels.length).toFixed(3)} |`,
    );
  }
  await Deno.remove(dir, { recursive: true });
  console.log("# VAE slicing and tiling\n");
  console.log(
    "shapes-tiny's AutoencoderKL decoder (channels 16–64, tile 32 latents = 256 px), 1024², n = 4, native CPU; each row a fresh process.\n",
  );
  console.log(
    "| decode | ms (4 images) | peak RSS before, MiB | peak RSS after, MiB | vs whole: max / mean abs. diff (0–255) |",
  );
  console.log("|---|---|---|---|---|");
  for (const row of rows) console.log(row);
  console.log("\nCommand: `deno run -A compute/bench/bench_vae.ts` (part of `deno task bench`).");
}
