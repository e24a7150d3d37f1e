/**
 * `--cfg-parallel-size 2`, `--cfg-mode sequential` and `--enable-cpu-offload` through the server:
 * the tiny Qwen-Image (true CFG by default) draws the same bytes as with none of them, request
 * after request (the released text encoder reopens for the second).
 */
import assert from "node:assert/strict";
import { requestImage } from "../fixtures/reference/served.ts";
import { startServer } from "./test_server.ts";

const MODEL = new URL("../fixtures/models/qwen-image-tiny", import.meta.url).pathname;
const REQUESTS = [
  { prompt: "a red circle", size: "64x48", num_inference_steps: 2, seed: 7 },
  { prompt: "a blue square", size: "64x48", num_inference_steps: 2, seed: 8 },
];

/** The images the server draws for {@linkcode REQUESTS}, one after the other. */
async function served(args: string[]) {
  const server = await startServer(["--model", MODEL, "--device", "cpu", ...args]);
  try {
    const images = [];
    for (const r of REQUESTS) images.push(Array.from((await requestImage(server.url, r)).data));
    return images;
  } finally {
    await server.stop();
  }
}

Deno.test("--cfg-parallel-size 2, --cfg-mode sequential and --enable-cpu-offload serve the default bytes", async () => {
  const plain = await served([]);
  assert.notDeepEqual(plain[0].slice(0, 64), plain[1].slice(0, 64));
  for (
    const args of [
      ["--cfg-parallel-size", "2"],
      ["--cfg-mode", "sequential", "--enable-cpu-offload"],
    ]
  ) {
    const images = await served(args);
    assert.ok(
      images.every((image, k) => image.every((v, i) => v === plain[k][i])),
      `${args.join(" ")}: other bytes`,
    );
  }
});
