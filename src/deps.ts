/**
 * What the HTTP side needs from outside, as types only: the engine as the routes see it
 * ({@linkcode EngineLike}, so tests can hand `buildApp` a fake), the configuration fixed at
 * start-up, and the few values that change while the server runs, each written by one owner.
 *
 * @module
 */
import type { CacheConfig, GenerateResult } from "../compute/mod.ts";
import type { PngWorkers } from "../compute/mod.ts";
import type { LoraResolver } from "./api/lora.ts";
import type { EngineRequest, EngineState } from "./engine/engine.ts";
import type { ModelInfo } from "./engine/protocol.ts";
import type { ImageStore } from "./image_store.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";

/** The engine as routes use it (`src/engine/engine.ts` is the real one). */
export interface EngineLike {
  readonly state: EngineState;
  /** Requests in a running batch. */
  readonly running: number;
  /** Requests admitted and not yet started. */
  readonly waiting: number;
  /** The loaded model, or throws the engine's error saying why there is none. */
  model(): ModelInfo;
  /** Runs one generation; `signal` cancels it. */
  generate(request: EngineRequest): Promise<GenerateResult>;
}

/** Cross-origin access (vLLM's `--allowed-origins`, …); off when absent. */
export interface CorsConfig {
  origins: readonly string[];
  methods: readonly string[];
  headers: readonly string[];
  credentials: boolean;
}

/** Server-wide settings the generation endpoints need. */
export interface ServingConfig {
  servedModelName: string;
  /** Other names a request's `model` may give (the `--model` value, without a served name). */
  modelAliases?: readonly string[];
  maxImagePixels: number;
  /** Most steps a request runs; more are lowered to it (the model card's). Absent: no cap. */
  maxSteps?: number;
  /** The guidance scale a guidance-distilled model always runs at (the model card's). */
  fixedGuidance?: number;
  /** Per-request time limit in seconds (`--request-timeout`); absent: none. */
  requestTimeoutS?: number;
  /** Where request adapters may come from (`--lora-root`, `--lora-modules`); absent: nowhere. */
  lora?: LoraResolver;
  /** The step cache of requests without a `cache` field (`--cache-backend`); absent: none. */
  cache?: CacheConfig;
}

/** The app's configuration, fixed before it is built. */
export interface AppConfig extends ServingConfig {
  apiKey?: string;
  /** Serve /metrics without the key. */
  publicMetrics?: boolean;
  /** Base of image URLs (`--public-url`); absent: the listening address ({@linkcode Live}). */
  publicUrl?: string;
  /** The model's hub id or folder name (no path), shown as `root` in /v1/models. */
  modelRoot: string;
  /** Most generation requests received and handled at once. */
  maxConcurrentRequests?: number;
  /** How long a request body may take to arrive, in seconds. */
  bodyTimeoutS?: number;
  cors?: CorsConfig;
}

/**
 * What changes while the server runs. The app only reads it; `src/lifecycle.ts` sets `draining`,
 * `src/startup.ts` the listening address and the PNG workers.
 */
export interface Live {
  /** A shutdown began: no new work is admitted. */
  readonly draining: boolean;
  /** `http://host:port` once listening; empty before. */
  readonly listenUrl: string;
  /** Workers that deflate large PNGs in stripes on several cores; absent: one stream (sharp). */
  readonly pngWorkers?: PngWorkers;
}

/** The services the app uses beside its configuration and engine. */
export interface AppServices {
  store: ImageStore;
  metrics: Metrics;
  live: Live;
  log: Logger;
}

/** Everything routes and middleware may use. */
export interface AppDeps extends AppServices {
  config: Readonly<AppConfig>;
  engine: EngineLike;
}
