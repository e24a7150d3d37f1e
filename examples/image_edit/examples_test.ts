import assert from "node:assert/strict";
import { encode } from "fast-png";
import { readImage } from "../../scripts/judge.ts";
import { readScene } from "../../scripts/scene_check.ts";
import { startServer } from "../../src/test_server.ts";
import { editParams } from "./openai_edit_client.ts";

const HERE = new URL(".", import.meta.url).pathname;

const server = await startServer(["--device", "cpu"]);
const port = new URL(server.url).port;
const work = await Deno.makeTempDir({ prefix: "denoise-edit-examples-" });
Deno.test.afterAll(async () => {
  await server.stop();
  await Deno.remove(work, { recursive: true });
});

async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(command, { args, cwd: work, env, stderr: "piped" }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** What the scene checker reads in a PNG of the work folder. */
async function scene(file: string) {
  const { background, colour, shape } = readScene(await readImage(`${work}/${file}`));
  return { background, colour, shape };
}

Deno.test("run_curl_image_edit.sh draws a red circle on blue, then edits its background to green", async () => {
  await run("bash", [`${HERE}/run_curl_image_edit.sh`], { PORT: port });
  assert.deepEqual(await scene("input.png"), {
    background: "blue",
    colour: "red",
    shape: "circle",
  });
  assert.deepEqual(await scene("edited.png"), {
    background: "green",
    colour: "red",
    shape: "circle",
  });
});

Deno.test("openai_edit_client.ts uploads an image and a mask through the SDK's images.edit", async () => {
  const input = await readImage(`${work}/input.png`);
  const { width, height } = input;
  // Transparent (repaint) on the left half, opaque (keep) on the right.
  const mask = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) mask[4 * i + 3] = i % width < width / 2 ? 0 : 255;
  await Deno.writeFile(`${work}/mask.png`, encode({ width, height, data: mask, channels: 4 }));
  await run(Deno.execPath(), [
    "run",
    "-A",
    "--node-modules-dir=auto",
    `${HERE}/openai_edit_client.ts`,
    ...["--server", server.url, "--image", "input.png", "--mask", "mask.png"],
    ...["--prompt", "a large red circle on a green background", "--strength", "1"],
    ...["--seed", "3", "--output", "inpainted.png"],
  ]);
  const out = await readImage(`${work}/inpainted.png`);
  // The kept right half stays as it was (within the autoencoder's round trip); the left changes.
  const meanDifference = (fromX: number, toX: number) => {
    let sum = 0, n = 0;
    for (let y = 0; y < height; y++) {
      for (let x = fromX; x < toX; x++) {
        for (let c = 0; c < 3; c++) {
          const i = 3 * (y * width + x) + c;
          sum += Math.abs(out.data[i] - input.data[i]);
          n++;
        }
      }
    }
    return sum / n;
  };
  const kept = meanDifference(width / 2 + 8, width);
  const repainted = meanDifference(0, width / 2 - 8);
  assert.ok(kept < 8, `kept half moved by ${kept.toFixed(1)}/255`);
  assert.ok(repainted > 4 * kept, `repainted ${repainted.toFixed(1)}, kept ${kept.toFixed(1)}`);
});

Deno.test("the edit client's flags become form fields; absent ones are left out", () => {
  const { values, extra } = editParams(["--image", "a.png", "--strength", "0.6", "--seed", "3"]);
  assert.equal(values.output, "edited.png");
  assert.deepEqual(extra, { strength: 0.6, seed: 3 });
});
