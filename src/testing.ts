/**
 * In-process test doubles for the HTTP side: a fake engine that makes solid-colour images at
 * once, and `testApp()`, the real app built around it with a captured log. Route and middleware
 * tests use them with `app.request()`: no worker, no model, no port.
 *
 * @module
 */
import type { EditInput, GenerateResult } from "../compute/mod.ts";
import { buildApp } from "./app.ts";
import type { AppConfig, AppServices, EngineLike } from "./deps.ts";
import type { EngineRequest, EngineState } from "./engine/engine.ts";
import { CancelledError, EngineNotReady, ModelLoadFailed } from "./engine/errors.ts";
import type { ModelInfo } from "./engine/protocol.ts";
import { createLogger } from "./log.ts";

/** The model the fake engine reports. */
export const FAKE_MODEL: ModelInfo = {
  family: "StableDiffusionPipeline",
  device: "cpu",
  defaults: { width: 64, height: 64, steps: 2, guidanceScale: 7.5 },
  sizeMultiple: 8,
  maxEditImages: 1,
};

/**
 * An engine that answers at once: `n` solid grey images of the requested size, two steps. An edit
 * instead answers its image moved toward that grey by `strength`, where its mask repaints (all of
 * it without a mask), so tests can see which pixels reached the engine.
 */
export class FakeEngine implements EngineLike {
  state: EngineState = { status: "ready", model: FAKE_MODEL };
  running = 0;
  waiting = 0;
  /** Every request it was given, in order. */
  readonly requests: EngineRequest[] = [];
  /** Replaces the default generation (to fail, or to wait for a signal). */
  run?: (request: EngineRequest) => Promise<GenerateResult>;

  model(): ModelInfo {
    const s = this.state;
    if (s.status === "ready") return s.model;
    throw s.status === "loading" ? new EngineNotReady(s.stage) : new ModelLoadFailed(s.reason);
  }

  generate(request: EngineRequest): Promise<GenerateResult> {
    this.model();
    this.requests.push(request);
    if (request.signal?.aborted) return Promise.reject(new CancelledError("cancelled"));
    return this.run?.(request) ?? Promise.resolve(fakeResult(request));
  }
}

/** What the fake engine makes for `request`, reporting its steps and previews on the way. */
export function fakeResult(request: EngineRequest): GenerateResult {
  const { width = 64, height = 64, n = 1 } = request;
  for (let step = 0; step < 2; step++) {
    request.onStep?.({ step, total: 2, timestep: 1, ms: 1, cached: false });
  }
  const { edit } = request;
  if (edit && (edit.image.width !== width || edit.image.height !== height)) {
    throw new RangeError("an edit's image must have the output's size");
  }
  const grey = () => new Uint8Array(width * height * 3).fill(128);
  const image = () => ({ width, height, data: edit ? fakeEdit(edit) : grey() });
  for (let index = 0; index < (request.previews ?? 0); index++) {
    request.onPreview?.({ index, step: index, images: Array.from({ length: n }, image) });
  }
  return {
    images: Array.from({ length: n }, image),
    seed: BigInt(request.seed ?? 7),
    width,
    height,
    steps: 2,
    guidanceScale: 7.5,
    scheduler: "euler",
    timings: { tokenizeMs: 1, textEncodeMs: 2, stepMs: [3, 4], decodeMs: 5, totalMs: 15 },
  };
}

/** What the fake engine makes of an edit (see {@linkcode FakeEngine}). */
function fakeEdit({ image, mask, strength }: EditInput): Uint8Array {
  return image.data.map((v, i) =>
    mask && mask[Math.floor(i / 3)] < 128 ? v : Math.round(v + (128 - v) * strength)
  );
}

/** The app's configuration in tests; `overrides` replace fields. */
export function testConfig(overrides: Partial<AppConfig> = {}): AppConfig {
  return {
    servedModelName: "test/model",
    modelRoot: "model",
    maxImagePixels: 1024 * 1024,
    ...overrides,
  };
}

/** The real app around a fake engine, with its log lines captured. */
export function testApp(
  options: { config?: Partial<AppConfig>; engine?: FakeEngine; services?: Partial<AppServices> } =
    {},
) {
  const engine = options.engine ?? new FakeEngine();
  const lines: string[] = [];
  const log = createLogger("debug", "json", (line) => lines.push(line));
  const app = buildApp(testConfig(options.config), engine, { log, ...options.services });
  /** POSTs `body` as JSON to `path`. */
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  /** The parsed log lines (JSON format). */
  const logged = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { app, engine, post, logged, lines };
}
