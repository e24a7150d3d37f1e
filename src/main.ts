/**
 * `deno task serve [--model ID|PATH] [--host] [--port 8000] [--device auto|webgpu|wasm|cpu]
 * [--served-model-name] [--max-image-pixels] [--api-key]`: listens at once, loads the model in
 * the background, serves until SIGINT/SIGTERM.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  DEFAULT_MAX_IMAGE_PIXELS,
  DEVICE_CHOICES,
  type DeviceChoice,
  findModelCard,
  loadPipeline,
  type ResolvedModel,
  resolveModel,
} from "../compute/mod.ts";
import { DownloadProgressBar, formatBytes } from "./progress_bar.ts";
import { buildApp } from "./app.ts";
import { Engine } from "./engine.ts";
import { ImageStore } from "./image_store.ts";

/** The model served when `--model` is absent: shapes-tiny, trained here (models/shapes-tiny). */
export const EMBEDDED_MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const EMBEDDED_NAME = "denoise/shapes-tiny";

const HELP = `denoise: an OpenAI-compatible image generation server

Usage: deno task serve [options]

  --model ID|PATH           diffusers/Optimum ONNX model folder, or a Hugging Face id: found in the
                            hub cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub), else
                            downloaded into it (HF_ENDPOINT, HF_TOKEN; HF_HUB_OFFLINE=1 forbids)
                            (default: the embedded shapes-tiny model, models/shapes-tiny)
  --host HOST               address to listen on (default 127.0.0.1)
  --port PORT               port (default 8000; 0 picks a free one)
  --device DEVICE           auto | webgpu | wasm | cpu (default auto: hardware WebGPU, else native CPU, else WASM)
  --served-model-name NAME  name clients send as "model" (default: the model path or id)
  --max-image-pixels N      largest width*height a request may ask for (default: the model's limit
                            from the registry, 4194304 for Qwen-Image and Z-Image, else 1048576)
  --api-key KEY             require "Authorization: Bearer KEY" on /v1/* (or env DENOISE_API_KEY)
  -h, --help                show this help
`;

function fail(message: string): never {
  console.error(`error: ${message}\n\n${HELP}`);
  Deno.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "8000" },
        device: { type: "string", default: "auto" },
        "served-model-name": { type: "string" },
        "max-image-pixels": { type: "string" },
        "api-key": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    fail((e as Error).message);
  }
})();

if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  fail(`--port must be 0-65535, got ${values.port}`);
}
const card = findModelCard(values.model ?? EMBEDDED_NAME);
const maxImagePixels = values["max-image-pixels"] === undefined
  ? card?.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS
  : Number(values["max-image-pixels"]);
if (!Number.isInteger(maxImagePixels) || maxImagePixels < 64) {
  fail(`--max-image-pixels must be an integer >= 64`);
}
if (!DEVICE_CHOICES.includes(values.device as DeviceChoice)) {
  fail(`--device must be one of ${DEVICE_CHOICES.join(", ")}, got ${values.device}`);
}
let resolved: ResolvedModel = { dir: EMBEDDED_MODEL, source: "local" };
if (values.model) {
  try {
    resolved = await resolveModel(values.model);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
  if (resolved.source === "hub") {
    const { plan } = resolved;
    console.log(
      `model ${values.model}: downloading ${plan.files.length} files (${
        formatBytes(plan.totalBytes)
      }) of commit ${plan.sha.slice(0, 12)} into ${plan.snapshotDir}` +
        (plan.skipped.length
          ? `; skipping ${plan.skipped.length} files the ONNX export does not use`
          : ""),
    );
  } else {
    const where = resolved.source === "local" ? "local folder" : "Hugging Face cache";
    console.log(`model ${values.model}: ${where} ${resolved.dir}`);
  }
}
const modelDir = resolved.dir;
const servedModelName = values["served-model-name"] ?? values.model ?? EMBEDDED_NAME;

const engine = new Engine();
const app = buildApp({
  engine,
  store: new ImageStore(),
  config: {
    servedModelName,
    maxImagePixels,
    apiKey: values["api-key"] ?? Deno.env.get("DENOISE_API_KEY"),
    modelRoot: modelDir,
  },
});

const server = Deno.serve({
  hostname: values.host,
  port,
  onListen: ({ hostname, port }) =>
    console.log(
      `denoise listening on http://${hostname}:${port} (model ${servedModelName}, loading…)`,
    ),
}, app.fetch);

let loadStart = performance.now();
const shutdown = new AbortController();
engine.start(async (report) => {
  if (resolved.source === "hub") {
    const bar = new DownloadProgressBar(values.model!);
    await resolved.download({
      signal: shutdown.signal,
      onProgress: (p) => {
        bar.update(p);
        report(`downloading, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}`);
      },
    });
    bar.finish();
    console.log(
      `model ${values.model}: downloaded in ${
        ((performance.now() - loadStart) / 1000).toFixed(1)
      } s`,
    );
    report("reading the ONNX graphs");
    loadStart = performance.now();
  }
  return loadPipeline(modelDir, {
    device: values.device as DeviceChoice,
    defaults: card?.defaults,
  });
}).then(() => {
  const s = engine.state;
  if (s.status === "ready") {
    console.log(
      `model ready on ${s.pipeline.device} in ${(performance.now() - loadStart).toFixed(0)} ms`,
    );
  } else if (s.status === "failed") console.error(`model failed to load: ${s.reason}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    shutdown.abort();
    await server.shutdown();
    await engine.release();
    Deno.exit(0);
  });
}
