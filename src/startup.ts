/**
 * The server's start, in its order: resolve the model (a local folder, the Hugging Face cache,
 * or a download plan), start the engine's worker loading it, then import and build the HTTP side,
 * listen, and only then download (so a bad flag or a busy port fails first). The worker starts
 * before this thread imports the HTTP side (`app.ts` and the LoRA resolver, ~0.5 s of module
 * loading, imported dynamically below), so the two overlap; the PNG workers start once the
 * model is loaded, not beside it.
 *
 * Each step gets the frozen {@linkcode ServerConfig} and what earlier steps made; the values that
 * change while the server runs are owned here (listening address, PNG workers) and by
 * `lifecycle.ts` (draining), and the app only reads them.
 *
 * @module
 */
import { basename, resolve as resolvePath } from "node:path";
import {
  type Conversion,
  DEFAULT_MAX_IMAGE_PIXELS,
  findModelCard,
  idleCleanup,
  parseShardSize,
  planConversion,
  PngWorkers,
  type ResolvedModel,
  resolveModel as resolveModelSource,
} from "../compute/mod.ts";
import type { ServerConfig } from "./cli.ts";
import type { AppConfig, Live } from "./deps.ts";
import { Engine } from "./engine/engine.ts";
import { type GuardedServer, serveGuarded } from "./header_guard.ts";
import { DirectoryImageStore, MemoryImageStore } from "./image_store.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { portHolder } from "./port_holder.ts";
import { DownloadProgressBar, formatBytes } from "./progress_bar.ts";
import { VERSION } from "./version.ts";

/** The model served when none is given: shapes-tiny, trained here (models/shapes-tiny). */
const EMBEDDED_MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const EMBEDDED_NAME = "denoise/shapes-tiny";

/** What the served model is called. */
interface ModelNames {
  /** The hub id, or the folder's name (never its path): `root` in /v1/models. */
  modelRoot: string;
  /** The `id` in /v1/models and the name requests give. */
  servedModelName: string;
}

/** Where the model comes from; logs what will be read or downloaded. */
async function resolveModel(config: ServerConfig, log: Logger): Promise<ResolvedModel> {
  if (!config.model) return { dir: EMBEDDED_MODEL, source: "local", format: "onnx" };
  const resolved = await resolveModelSource(config.model, undefined, config.variant);
  if (resolved.source === "hub") {
    const { plan } = resolved;
    const what = plan.format === "onnx" ? "the ONNX export" : "the conversion";
    log.info(
      `model ${config.model}: downloading ${plan.files.length} files (${
        formatBytes(plan.totalBytes)
      }) of commit ${plan.sha.slice(0, 12)} into ${plan.snapshotDir}` +
        (plan.format === "onnx" ? "" : ` (.safetensors, converted once downloaded)`) +
        (plan.skipped.length
          ? `; skipping ${plan.skipped.length} files ${what} does not use`
          : "") +
        (plan.published?.variant
          ? `; ${plan.published.layout.repo}'s ${plan.published.variant} variant (${
            plan.published.chosen === "asked" ? "--variant" : "the default; choose with --variant"
          }; the repo has ${plan.published.available.join(", ")})`
          : ""),
    );
  } else {
    const where = resolved.source === "hf-cache"
      ? "Hugging Face cache"
      : resolved.format === "single-file"
      ? "local file"
      : "local folder";
    log.info(`model ${config.model}: ${where} ${resolved.dir}`);
  }
  return resolved;
}

/**
 * The conversion a model of PyTorch weights needs (undefined for ONNX), planned against the
 * converted-model cache; logs whether it is reused or will be made.
 */
async function conversionOf(
  config: ServerConfig,
  resolved: ResolvedModel,
  names: ModelNames,
  log: Logger,
): Promise<Conversion | undefined> {
  if (resolved.format === "onnx") return undefined;
  const conversion = await planConversion({
    src: resolved.dir,
    config: resolved.format === "single-file" ? config.modelConfig : undefined,
    dtype: config.convertDtype,
    label: names.modelRoot,
  });
  log.info(
    conversion.cached
      ? `model ${config.model}: reusing the converted model ${conversion.dir}`
      : `model ${config.model}: converting ${
        formatBytes(conversion.totalBytes)
      } of .safetensors weights into ${conversion.dir} once the server listens`,
  );
  return conversion;
}

function modelNames(config: ServerConfig, resolved: ResolvedModel): ModelNames {
  // The name as written, made absolute ('.' names the current folder), not the real path: a
  // link to a hub snapshot is named by the link, not by the snapshot's commit hash.
  const modelRoot = resolved.source === "local"
    ? basename(resolvePath(resolved.dir)).replace(/\.safetensors$/, "")
    : config.model!;
  return {
    modelRoot,
    servedModelName: config.servedModelName ?? (config.model ? modelRoot : EMBEDDED_NAME),
  };
}

/** What {@linkcode startEngine} made. */
interface Started {
  engine: Engine;
  metrics: Metrics;
  /** Settles when loading ends, ready or failed. */
  loaded: Promise<void>;
}

/**
 * Creates the engine and starts loading the model in its worker; a hub download first waits for
 * `listening`. Logs the outcome; a failed load exits 1 with `--exit-on-load-failure`.
 */
function startEngine(
  config: ServerConfig,
  resolved: ResolvedModel,
  conversion: Conversion | undefined,
  names: ModelNames,
  shutdown: AbortSignal,
  listening: Promise<void>,
  log: Logger,
): Started {
  const metrics: Metrics = new Metrics(
    names.servedModelName,
    () => ({ running: engine.running, waiting: engine.waiting }),
  );
  const engine: Engine = new Engine({
    maxQueue: config.maxQueue,
    maxBatchSize: config.maxBatchSize,
    batchWaitMs: config.batchWaitMs,
  }, {
    ...metrics.observer,
    warning: (message) => log.warning(message),
    info: (message) => log.info(message),
  });
  const started = performance.now();
  let loadStart = started;
  const loaded = engine.start(async (report) => {
    if (resolved.source === "hub") {
      await listening;
      loadStart = performance.now();
      await download(config, resolved, shutdown, report, log);
      loadStart = performance.now();
      // A hub snapshot of .safetensors is planned for once it is there.
      conversion = await conversionOf(config, resolved, names, log);
    }
    if (!conversion) return resolved.dir;
    if (conversion.cached) return conversion.dir;
    await listening;
    const dir = await convertModel(config, conversion, shutdown, report, log);
    loadStart = performance.now();
    return dir;
  }, {
    device: config.device,
    variant: config.variant,
    defaults: findModelCard(config.model ?? EMBEDDED_NAME)?.defaults,
    backend: {
      threads: config.threads,
      fuseAttention: !config.disableAttentionFusion,
      shardSize: parseShardSize(config.shardSize),
    },
    vae: { tiling: config.vaeUseTiling },
    execution: {
      cfgMode: config.cfgMode,
      cfgParallelSize: config.cfgParallelSize,
      offload: config.enableCpuOffload || "auto",
    },
    lora: {
      maxVariants: config.maxCpuLoras,
      cacheBytes: config.maxLoraCacheMb * 2 ** 20,
      maxFileBytes: config.maxLoraFileMb * 2 ** 20,
    },
  }).then(() => {
    const s = engine.state;
    if (s.status === "ready") {
      metrics.modelLoaded((performance.now() - started) / 1000);
      log.info("model ready", {
        device: s.model.device,
        ms: Math.round(performance.now() - loadStart),
      });
    } else if (s.status === "failed") {
      log.error(`model failed to load: ${s.reason}`);
      if (config.exitOnLoadFailure) Deno.exit(1);
    }
  });
  return { engine, metrics, loaded };
}

/** Downloads a hub model, with a progress bar and the stage `/health` reports. */
async function download(
  config: ServerConfig,
  resolved: Extract<ResolvedModel, { source: "hub" }>,
  signal: AbortSignal,
  report: (stage: string) => void,
  log: Logger,
): Promise<void> {
  const started = performance.now();
  report(`downloading, ${formatBytes(0)} of ${formatBytes(resolved.plan.totalBytes)}`);
  const bar = new DownloadProgressBar(config.model!);
  await resolved.download({
    signal,
    onProgress: (p) => {
      bar.update(p);
      report(`downloading, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}`);
    },
  });
  bar.finish();
  log.info(`model ${config.model}: downloaded`, {
    seconds: ((performance.now() - started) / 1000).toFixed(1),
  });
}

/** Converts the model into the cache, with a progress bar and the stage `/health` reports. */
async function convertModel(
  config: ServerConfig,
  conversion: Conversion,
  signal: AbortSignal,
  report: (stage: string) => void,
  log: Logger,
): Promise<string> {
  const started = performance.now();
  const total = formatBytes(conversion.totalBytes);
  report(`converting, ${formatBytes(0)} of ${total}`);
  const bar = new DownloadProgressBar(`converting ${config.model}`);
  const dir = await conversion.run({
    signal,
    onProgress: (p) => {
      bar.update(p);
      report(`converting, ${formatBytes(p.bytes)} of ${total}`);
    },
  });
  bar.finish();
  log.info(`model ${config.model}: converted into ${dir}`, {
    seconds: ((performance.now() - started) / 1000).toFixed(1),
  });
  return dir;
}

/** The app's configuration: the flags, the model's names and card, the adapters. */
async function appConfig(
  config: ServerConfig,
  names: ModelNames,
  lifecycle: Lifecycle,
): Promise<AppConfig> {
  const { LoraResolver } = await import("./api/lora.ts");
  let lora;
  try {
    lora = await LoraResolver.create(config.loraRoot, config.loraModules);
  } catch (e) {
    return lifecycle.fatal((e as Error).message);
  }
  if (lora.names.includes(names.servedModelName)) {
    // A request's `model` names either the served model or an adapter; one name cannot be both.
    return lifecycle.fatal(
      `--lora-modules ${names.servedModelName}: the served model already has that name.`,
    );
  }
  const card = findModelCard(config.model ?? EMBEDDED_NAME);
  return Object.freeze({
    ...names,
    // Requests that name the model as --model gave it were accepted before the name was short.
    modelAliases: config.servedModelName || !config.model ? [] : [config.model],
    maxImagePixels: config.maxImagePixels ?? card?.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS,
    maxSteps: card?.maxSteps,
    fixedGuidance: card?.fixedGuidance,
    requestTimeoutS: config.requestTimeout,
    lora,
    cache: config.cache,
    publicUrl: config.publicUrl?.replace(/\/+$/, ""),
    cors: config.allowedOrigins && {
      origins: config.allowedOrigins,
      methods: config.allowedMethods,
      headers: config.allowedHeaders,
      credentials: config.allowCredentials,
    },
    apiKey: config.apiKey,
    publicMetrics: config.publicMetrics,
    maxConcurrentRequests: config.maxConcurrentRequests,
    bodyTimeoutS: config.bodyTimeout,
  });
}

/**
 * This thread's share of giving memory back after a burst: the worker trims once its batches
 * end, but the images it sent here (and their encodings and response bodies) are freed only
 * later, and nothing collects them while the server is idle. So once no POST (the generations)
 * has been in flight for 250 ms and the engine is idle, this thread collects its garbage and
 * trims the process's heap (docs/benchmarks.md, "Memory after a burst"). GETs (probes, metrics)
 * leave little garbage and do not start it.
 */
function withIdleCleanup(fetch: Deno.ServeHandler, engine: Engine): Deno.ServeHandler {
  let inFlight = 0;
  const cleanup = idleCleanup(250, () => inFlight > 0 || engine.running + engine.waiting > 0);
  const done = () => {
    inFlight--;
    cleanup.schedule();
  };
  return (request, info) => {
    if (request.method === "POST") {
      inFlight++;
      cleanup.cancel();
      info.completed.then(done, done);
    }
    return fetch(request, info);
  };
}

/** Listens; a busy or unusable address exits 1 with one line. */
function listen(
  config: ServerConfig,
  handler: Deno.ServeHandler,
  onListen: (url: string) => void,
  lifecycle: Lifecycle,
): GuardedServer | Promise<never> {
  const log = lifecycle.log;
  try {
    return serveGuarded(handler, {
      hostname: config.host,
      port: config.port,
      headerTimeoutS: config.headerTimeout,
      log,
      onUnguarded: (reason) =>
        log.warning(`request heads are not timed (--header-timeout): ${reason}`),
      onListen: ({ hostname, port }) => {
        const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
        onListen(`http://${shown}:${port}`);
      },
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      const holder = portHolder(config.port);
      return lifecycle.fatal(
        `port ${config.port} on ${config.host} is already in use${
          holder ? ` by ${holder}` : ""
        }; stop it or choose another --port`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
      return lifecycle.fatal(`cannot listen on ${config.host}:${config.port}: ${e.message}`);
    }
    throw e;
  }
}

/** Starts the server (see the module's description); resolves once it listens. */
export async function startServer(config: ServerConfig, log: Logger): Promise<void> {
  const lifecycle = new Lifecycle(log, config.shutdownTimeout);
  let resolved: ResolvedModel;
  let names: ModelNames;
  let conversion: Conversion | undefined;
  try {
    resolved = await resolveModel(config, log);
    names = modelNames(config, resolved);
    if (resolved.source !== "hub") conversion = await conversionOf(config, resolved, names, log);
  } catch (e) {
    return lifecycle.fatal((e as Error).message);
  }
  const listening = Promise.withResolvers<void>();
  const { engine, metrics, loaded } = startEngine(
    config,
    resolved,
    conversion,
    names,
    lifecycle.shutdownSignal,
    listening.promise,
    log,
  );
  lifecycle.watch(engine);

  let listenUrl = "";
  let pngWorkers: PngWorkers | undefined;
  const { buildApp } = await import("./app.ts");
  const app = buildApp(await appConfig(config, names, lifecycle), engine, {
    store: config.imageStoreDir
      ? new DirectoryImageStore(config.imageStoreDir, config.maxImageStoreMb * 2 ** 20)
      : new MemoryImageStore(config.maxImageStoreMb * 2 ** 20),
    metrics,
    live: liveState(lifecycle, () => listenUrl, () => pngWorkers),
    log,
  });
  const server = await listen(config, withIdleCleanup(app.fetch, engine), (url) => {
    listenUrl = url;
    log.info(`denoise listening on ${url}`, { model: names.servedModelName, version: VERSION });
  }, lifecycle);
  lifecycle.serving(server);
  listening.resolve();
  if (navigator.hardwareConcurrency > 1) {
    void loaded.then(() => {
      if (engine.state.status === "ready") pngWorkers = new PngWorkers();
    });
  }
}

/** The app's view of what changes while the server runs, read from each value's owner. */
function liveState(
  lifecycle: Lifecycle,
  listenUrl: () => string,
  pngWorkers: () => PngWorkers | undefined,
): Live {
  return {
    get draining() {
      return lifecycle.draining;
    },
    get listenUrl() {
      return listenUrl();
    },
    get pngWorkers() {
      return pngWorkers();
    },
  };
}
