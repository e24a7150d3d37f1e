/**
 * `deno task serve [MODEL] [options]` (see `--help`, or the flag table in `src/cli.ts`): starts
 * loading the model in the engine's worker, listens, serves until SIGINT or SIGTERM, then drains:
 * finishes what it accepted, answers new requests 503, exits 0.
 *
 * Start-up order is chosen for time to healthy: the worker starts before this thread imports the
 * HTTP side (`app.ts` and the LoRA resolver, ~0.5 s of module loading, imported dynamically
 * below), so the two overlap; the PNG workers start once the model is loaded, not beside it.
 *
 * @module
 */
import { basename, resolve as resolvePath } from "node:path";
import type { ResolvedModel } from "../compute/mod.ts";
import { idleCleanup } from "../compute/backends/heap.ts";
import { PngWorkers } from "../compute/image/png_workers.ts";
import { DEFAULT_MAX_IMAGE_PIXELS, findModelCard } from "../compute/registry.ts";
import { type GuardedServer, serveGuarded } from "./header_guard.ts";
import { CliError, helpText, parseCli, type ServerOptions } from "./cli.ts";
import { Engine } from "./engine/engine.ts";
import { ShuttingDown } from "./engine/errors.ts";
import { DirectoryImageStore, MemoryImageStore } from "./image_store.ts";
import { createLogger, type Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { portHolder } from "./port_holder.ts";
import { DownloadProgressBar, formatBytes } from "./progress_bar.ts";
import type { LoraResolver } from "./serving/lora.ts";
import { VERSION } from "./version.ts";

/** The model served when none is given: shapes-tiny, trained here (models/shapes-tiny). */
export const EMBEDDED_MODEL = new URL("../models/shapes-tiny", import.meta.url).pathname;
const EMBEDDED_NAME = "denoise/shapes-tiny";

/** Where the model comes from, or a one-line error and exit 1. */
async function resolve(options: ServerOptions, log: Logger): Promise<ResolvedModel> {
  if (!options.model) return { dir: EMBEDDED_MODEL, source: "local" };
  const { resolveModel } = await import("../compute/model/resolve.ts");
  const resolved = await resolveModel(options.model);
  if (resolved.source === "hub") {
    const { plan } = resolved;
    log.info(
      `model ${options.model}: downloading ${plan.files.length} files (${
        formatBytes(plan.totalBytes)
      }) of commit ${plan.sha.slice(0, 12)} into ${plan.snapshotDir}` +
        (plan.skipped.length
          ? `; skipping ${plan.skipped.length} files the ONNX export does not use`
          : ""),
    );
  } else {
    const where = resolved.source === "local" ? "local folder" : "Hugging Face cache";
    log.info(`model ${options.model}: ${where} ${resolved.dir}`);
  }
  return resolved;
}

/** Runs the server with command-line `args`; resolves once it listens. */
export async function main(args: readonly string[]): Promise<void> {
  let options: ServerOptions;
  try {
    options = parseCli(args);
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    console.error(`error: ${e.message}\nRun with --help for the options.`);
    Deno.exit(2);
  }
  if (options.help) {
    console.log(helpText());
    Deno.exit(0);
  }
  if (options.version) {
    console.log(`denoise ${VERSION}`);
    Deno.exit(0);
  }
  const log = createLogger(options.logLevel, options.logFormat);
  /** Readies the process to exit (see Engine.close); replaced once the engine exists. */
  let beforeExit = () => Promise.resolve();
  const fatal = async (message: string): Promise<never> => {
    log.error(message);
    await beforeExit();
    Deno.exit(1);
  };

  let resolved: ResolvedModel;
  try {
    resolved = await resolve(options, log);
  } catch (e) {
    return fatal((e as Error).message);
  }
  const card = findModelCard(options.model ?? EMBEDDED_NAME);
  // The hub id, or the folder's name (never its path): what /v1/models shows as `root`, and as
  // `id` when no --served-model-name is given.
  // The name as written, made absolute ('.' names the current folder), not the real path: a
  // link to a hub snapshot is named by the link, not by the snapshot's commit hash.
  const modelRoot = resolved.source === "local"
    ? basename(resolvePath(resolved.dir))
    : options.model!;
  const servedModelName = options.servedModelName ??
    (options.model ? modelRoot : EMBEDDED_NAME);
  const metrics: Metrics = new Metrics(
    servedModelName,
    () => ({ running: engine.running, waiting: engine.waiting }),
  );
  const engine: Engine = new Engine({
    maxQueue: options.maxQueue,
    maxBatchSize: options.maxBatchSize,
    batchWaitMs: options.batchWaitMs,
  }, { ...metrics.observer, warning: (message) => log.warning(message) });
  beforeExit = () => engine.close();

  let loadStart = performance.now();
  const started = performance.now();
  const shutdown = new AbortController();
  // A download waits until the server listens, so that a bad flag or a busy port fails first.
  const listening = Promise.withResolvers<void>();
  const loaded = engine.start(async (report) => {
    if (resolved.source === "hub") {
      await listening.promise;
      loadStart = performance.now();
      report(`downloading, ${formatBytes(0)} of ${formatBytes(resolved.plan.totalBytes)}`);
      const bar = new DownloadProgressBar(options.model!);
      await resolved.download({
        signal: shutdown.signal,
        onProgress: (p) => {
          bar.update(p);
          report(`downloading, ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}`);
        },
      });
      bar.finish();
      log.info(`model ${options.model}: downloaded`, {
        seconds: ((performance.now() - loadStart) / 1000).toFixed(1),
      });
      loadStart = performance.now();
    }
    return resolved.dir;
  }, {
    device: options.device,
    defaults: card?.defaults,
    backend: { threads: options.threads, fuseAttention: !options.disableAttentionFusion },
    vae: { tiling: options.vaeUseTiling },
    lora: {
      maxVariants: options.maxCpuLoras,
      cacheBytes: options.maxLoraCacheMb * 2 ** 20,
      maxFileBytes: options.maxLoraFileMb * 2 ** 20,
    },
  });
  void loaded.then(() => {
    const s = engine.state;
    if (s.status === "ready") {
      metrics.modelLoaded((performance.now() - started) / 1000);
      log.info("model ready", {
        device: s.model.device,
        ms: Math.round(performance.now() - loadStart),
      });
    } else if (s.status === "failed") {
      log.error(`model failed to load: ${s.reason}`);
      if (options.exitOnLoadFailure) Deno.exit(1);
    }
  });

  const lifecycle = { draining: false };
  let server: GuardedServer | undefined;
  /**
   * Graceful shutdown: stop admitting (new requests get 503 with retry-after), let every
   * accepted request finish within the grace period, answer the rest 503, close and exit 0.
   * Listened for from here on, since the model may be ready before the server listens.
   */
  const drain = async (signal: string) => {
    if (lifecycle.draining) return;
    lifecycle.draining = true;
    shutdown.abort();
    log.info(`${signal}: draining ${engine.running + engine.waiting} request(s)`, {
      timeout_s: options.shutdownTimeout,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      engine.idle().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), options.shutdownTimeout * 1000);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      log.warning(`shutdown timeout: answering ${engine.running + engine.waiting} request(s) 503`);
      engine.abortAll(new ShuttingDown());
    }
    // Responses already being written (streams, encodes) finish; no new connections are taken.
    if (server) await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 5000))]);
    const state = engine.state;
    if (state.status === "loading" && !state.stage?.startsWith("downloading")) {
      log.info("waiting for the model load to finish before exiting");
    }
    await engine.close();
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void drain(signal));
  }

  const [{ buildApp }, { LoraResolver: Resolver }] = await Promise.all([
    import("./app.ts"),
    import("./serving/lora.ts"),
  ]);
  let lora: LoraResolver;
  try {
    lora = await Resolver.create(options.loraRoot, options.loraModules);
  } catch (e) {
    return fatal((e as Error).message);
  }
  if (lora.names.includes(servedModelName)) {
    // A request's `model` names either the served model or an adapter; one name cannot be both.
    return fatal(`--lora-modules ${servedModelName}: the served model already has that name.`);
  }
  const config = {
    servedModelName,
    // Requests that name the model as --model gave it were accepted before the name was short.
    modelAliases: options.servedModelName || !options.model ? [] : [options.model],
    maxImagePixels: options.maxImagePixels ?? card?.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS,
    requestTimeoutS: options.requestTimeout,
    lora,
    pngWorkers: undefined as PngWorkers | undefined,
    publicUrl: options.publicUrl?.replace(/\/+$/, "") ?? "",
    cors: options.allowedOrigins && {
      origins: options.allowedOrigins,
      methods: options.allowedMethods,
      headers: options.allowedHeaders,
      credentials: options.allowCredentials,
    },
    apiKey: options.apiKey,
    publicMetrics: options.publicMetrics,
    maxConcurrentRequests: options.maxConcurrentRequests,
    bodyTimeoutS: options.bodyTimeout,
    modelRoot,
  };
  const app = buildApp({
    engine,
    store: options.imageStoreDir
      ? new DirectoryImageStore(options.imageStoreDir, options.maxImageStoreMb * 1024 * 1024)
      : new MemoryImageStore(options.maxImageStoreMb * 1024 * 1024),
    metrics,
    lifecycle,
    config,
    log,
  });

  // This thread's share of giving memory back after a burst: the worker trims once its batches
  // end, but the images it sent here (and their encodings and response bodies) are freed only
  // later, and nothing collects them while the server is idle. So once no POST (the generations)
  // has been in flight for 250 ms and the engine is idle, this thread collects its garbage and
  // trims the process's heap (docs/benchmarks.md, "Memory after a burst"). GETs (probes, metrics)
  // leave little garbage and do not start it.
  let inFlight = 0;
  const cleanup = idleCleanup(250, () => inFlight > 0 || engine.running + engine.waiting > 0);
  const done = () => {
    inFlight--;
    cleanup.schedule();
  };
  const handler: Deno.ServeHandler = (request, info) => {
    if (request.method === "POST") {
      inFlight++;
      cleanup.cancel();
      info.completed.then(done, done);
    }
    return app.fetch(request, info);
  };
  try {
    server = serveGuarded(handler, {
      hostname: options.host,
      port: options.port,
      headerTimeoutS: options.headerTimeout,
      log,
      onUnguarded: (reason) =>
        log.warning(`request heads are not timed (--header-timeout): ${reason}`),
      onListen: ({ hostname, port }) => {
        const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
        config.publicUrl ||= `http://${shown}:${port}`;
        log.info(`denoise listening on http://${shown}:${port}`, {
          model: servedModelName,
          version: VERSION,
        });
      },
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      const holder = portHolder(options.port);
      return fatal(
        `port ${options.port} on ${options.host} is already in use${
          holder ? ` by ${holder}` : ""
        }; stop it or choose another --port`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
      return fatal(`cannot listen on ${options.host}:${options.port}: ${(e as Error).message}`);
    }
    throw e;
  }
  listening.resolve();

  if (navigator.hardwareConcurrency > 1) {
    void loaded.then(() => {
      if (engine.state.status === "ready") config.pngWorkers = new PngWorkers();
    });
  }
}

if (import.meta.main) await main(Deno.args);
