/**
 * `deno task serve [--model ID|PATH] [--host] [--port 8000] [--device auto|webgpu|wasm|cpu] …`:
 * listens at once, loads the model in the background (in the engine's worker), serves until
 * SIGINT/SIGTERM, then drains: finishes what it accepted, answers new requests 503, exits 0.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  DEFAULT_MAX_IMAGE_PIXELS,
  DEVICE_CHOICES,
  type DeviceChoice,
  findModelCard,
  type ResolvedModel,
  resolveModel,
} from "../compute/mod.ts";
import { DownloadProgressBar, formatBytes } from "./progress_bar.ts";
import { buildApp } from "./app.ts";
import { Engine } from "./engine/engine.ts";
import { ApiError } from "./errors.ts";
import { ImageStore } from "./image_store.ts";
import { Metrics } from "./metrics.ts";

/** The model served when `--model` is absent: the embedded SD-Turbo-style fixture. */
export const EMBEDDED_MODEL = new URL("../fixtures/models/sd-turbo-tiny", import.meta.url).pathname;
const EMBEDDED_NAME = "denoise/sd-turbo-tiny";

const HELP = `denoise: an OpenAI-compatible image generation server

Usage: deno task serve [options]

  --model ID|PATH           diffusers/Optimum ONNX model folder, or a Hugging Face id: found in the
                            hub cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub), else
                            downloaded into it (HF_ENDPOINT, HF_TOKEN; HF_HUB_OFFLINE=1 forbids)
                            (default: the embedded tiny SD-Turbo fixture)
  --host HOST               address to listen on (default 127.0.0.1)
  --port PORT               port (default 8000; 0 picks a free one)
  --device DEVICE           auto | webgpu | wasm | cpu (default auto: hardware WebGPU, else native CPU, else WASM)
  --served-model-name NAME  name clients send as "model" (default: the model path or id)
  --max-image-pixels N      largest width*height a request may ask for (default: the model's limit
                            from the registry, 4194304 for Qwen-Image and Z-Image, else 1048576)
  --api-key KEY             require "Authorization: Bearer KEY" on /v1/* (or env DENOISE_API_KEY)
  --max-batch-size N        most images denoised together per network call (default 8)
  --batch-wait-ms MS        how long an idle engine waits for batch-mates of a first request
                            (default 5)
  --max-queue N             most requests waiting to start; more get 429 (default 16)
  --request-timeout S       per-request time limit in seconds, answered 504 (default: none)
  --allowed-origins LIST    CORS: origins allowed to call the API, as a JSON list or comma-separated
                            ("*" for any); CORS is off unless this is given
  --allowed-methods LIST    CORS: methods (default "*")
  --allowed-headers LIST    CORS: request headers (default "*": whatever the browser asks for)
  --allow-credentials       CORS: allow cookies/credentials (not with origin "*")
  --shutdown-timeout S      on SIGTERM/SIGINT, how long to finish accepted requests before
                            answering the rest 503 and exiting (default 30)
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
        "max-batch-size": { type: "string", default: "8" },
        "batch-wait-ms": { type: "string", default: "5" },
        "max-queue": { type: "string", default: "16" },
        "request-timeout": { type: "string" },
        "shutdown-timeout": { type: "string", default: "30" },
        "allowed-origins": { type: "string" },
        "allowed-methods": { type: "string", default: "*" },
        "allowed-headers": { type: "string", default: "*" },
        "allow-credentials": { type: "boolean", default: false },
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
const card = values.model ? findModelCard(values.model) : undefined;
const maxImagePixels = values["max-image-pixels"] === undefined
  ? card?.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS
  : Number(values["max-image-pixels"]);
if (!Number.isInteger(maxImagePixels) || maxImagePixels < 64) {
  fail(`--max-image-pixels must be an integer >= 64`);
}
/** A flag's value as a number within [min, max], or exit 2 naming the flag. */
function numberFlag(
  name: string,
  value: string,
  min: number,
  max = Infinity,
  integer = true,
): number {
  const n = Number(value);
  if (
    value.trim() === "" || !Number.isFinite(n) || n < min || n > max ||
    (integer && !Number.isInteger(n))
  ) {
    fail(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got ${value}`);
  }
  return n;
}
const maxBatchSize = numberFlag("max-batch-size", values["max-batch-size"], 1, 256);
const batchWaitMs = numberFlag("batch-wait-ms", values["batch-wait-ms"], 0, 10_000, false);
const maxQueue = numberFlag("max-queue", values["max-queue"], 0, 100_000);
const requestTimeoutS = values["request-timeout"] === undefined
  ? undefined
  : numberFlag("request-timeout", values["request-timeout"], 0.001, Infinity, false);
const shutdownTimeoutS = numberFlag(
  "shutdown-timeout",
  values["shutdown-timeout"],
  0,
  Infinity,
  false,
);
/** A list flag: a JSON list of strings (vLLM's form) or comma-separated values. */
function listFlag(name: string, value: string): string[] {
  if (value.trim().startsWith("[")) {
    try {
      const list = JSON.parse(value);
      if (Array.isArray(list) && list.every((v) => typeof v === "string")) return list;
    } catch { /* reported below */ }
    fail(`--${name} must be a JSON list of strings or comma-separated values, got ${value}`);
  }
  return value.split(",").map((v) => v.trim()).filter(Boolean);
}
const cors = values["allowed-origins"] === undefined ? undefined : {
  origins: listFlag("allowed-origins", values["allowed-origins"]),
  methods: listFlag("allowed-methods", values["allowed-methods"]),
  headers: listFlag("allowed-headers", values["allowed-headers"]),
  credentials: values["allow-credentials"],
};
if (cors?.credentials && cors.origins.includes("*")) {
  fail("--allow-credentials cannot be combined with --allowed-origins '*'; list the origins");
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

const metrics: Metrics = new Metrics(
  servedModelName,
  () => ({ running: engine.running, waiting: engine.waiting }),
);
const engine: Engine = new Engine({ maxQueue, maxBatchSize, batchWaitMs }, metrics.observer);
const lifecycle = { draining: false };
const app = buildApp({
  engine,
  store: new ImageStore(),
  metrics,
  lifecycle,
  config: {
    servedModelName,
    maxImagePixels,
    requestTimeoutS,
    cors,
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
const started = performance.now();
const shutdown = new AbortController();
void engine.start(async (report) => {
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
    loadStart = performance.now();
  }
  return modelDir;
}, { device: values.device as DeviceChoice, defaults: card?.defaults }).then(() => {
  const s = engine.state;
  if (s.status === "ready") {
    metrics.modelLoaded((performance.now() - started) / 1000);
    console.log(
      `model ready on ${s.model.device} in ${(performance.now() - loadStart).toFixed(0)} ms`,
    );
  } else if (s.status === "failed") console.error(`model failed to load: ${s.reason}`);
});

/**
 * Graceful shutdown: stop admitting (new requests get 503 with retry-after), let every accepted
 * request finish within the grace period, answer the rest 503, close the server and exit 0.
 */
async function drain(signal: string): Promise<void> {
  if (lifecycle.draining) return;
  lifecycle.draining = true;
  shutdown.abort();
  const inFlight = engine.running + engine.waiting;
  console.log(
    `${signal}: draining ${inFlight} request(s), at most ${shutdownTimeoutS} s (new requests get 503)`,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    engine.idle().then(() => false),
    new Promise<boolean>((
      resolve,
    ) => (timer = setTimeout(() => resolve(true), shutdownTimeoutS * 1000))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    console.log(`shutdown timeout: answering ${engine.running + engine.waiting} request(s) 503`);
    engine.abortAll(
      new ApiError(503, "The server shut down before this request finished; retry.", {
        type: "service_unavailable",
        code: "shutting_down",
        headers: { "retry-after": "5" },
      }),
    );
  }
  // Responses already being written (streams, encodes) finish; no new connections are taken.
  await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 5000))]);
  await engine.close();
  Deno.exit(0);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => void drain(signal));
}
