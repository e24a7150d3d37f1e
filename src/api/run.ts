/**
 * Running a planned generation on the engine for an endpoint: cancelled when the client leaves
 * or the server's request timeout passes (the one place those become 499 and 504), then its
 * images encoded in the requested format.
 *
 * @module
 */
import {
  CancelledError,
  type GenerateOptions,
  type GenerateResult,
  type ImageFormat,
} from "../../compute/mod.ts";
import { encodeImages } from "../../compute/image/mod.ts";
import type { EngineLike, Live, ServingConfig } from "../deps.ts";
import { ApiError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Generated, Outcome } from "./outcome.ts";

/** What running a generation needs from the server. */
export interface RunDeps {
  engine: EngineLike;
  config: Pick<ServingConfig, "requestTimeoutS">;
  live: Pick<Live, "pngWorkers">;
  log: Logger;
}

/** The HTTP request a generation serves, as the endpoint's answer sees it (no Hono types). */
export interface RequestContext {
  /** The request id, for the log. */
  id: string;
  /** Aborts when the client leaves. */
  signal?: AbortSignal;
  /** Where the answer records what it made, for the access log. */
  outcome: Outcome;
  /** Whether the answer is an event stream. */
  stream: boolean;
}

/** How the images are wanted. */
export interface Output {
  format: ImageFormat;
  compression?: number;
}

/**
 * Logs and runs one generation on the engine, cancelled when the client leaves (the request's
 * signal aborts) or when the server's request timeout passes. A cancellation becomes 499
 * (logged; nobody reads it) or 504 in the documented error shape.
 */
export async function runGeneration(
  deps: RunDeps,
  options: GenerateOptions,
  request: RequestContext,
): Promise<GenerateResult> {
  logGeneration(deps.log, request, options);
  const signal = request.signal;
  const timeoutS = deps.config.requestTimeoutS;
  const timeout = timeoutS ? AbortSignal.timeout(timeoutS * 1000) : undefined;
  const signals = [signal, timeout].filter((s): s is AbortSignal => s !== undefined);
  try {
    return await deps.engine.generate({ ...options, signal: AbortSignal.any(signals) });
  } catch (e) {
    if (!(e instanceof CancelledError)) throw e;
    if (timeout?.aborted && !signal?.aborted) {
      throw new ApiError(
        504,
        `The generation did not finish within the server's request timeout of ${timeoutS} s.`,
        { type: "timeout_error", code: "request_timeout", headers: { "x-should-retry": "false" } },
      );
    }
    throw clientClosed();
  }
}

/** The 499 of a client that left (logged; nobody reads it). */
const clientClosed = () =>
  new ApiError(499, "Client closed request.", { code: "client_closed_request" });

/**
 * Throws the 499 when the client has left (`signal` aborted): checked before encoding, which only
 * that client would use (a close during the last decoder call, or while the images crossed from
 * the worker), and after it, before the response is built.
 */
function throwIfClosed(signal?: AbortSignal): void {
  if (signal?.aborted) throw clientClosed();
}

/** Encodes a finished generation's images, unless the client has left (`signal`). */
export async function encodeResult(
  deps: Pick<RunDeps, "live">,
  result: GenerateResult,
  output: Output,
  signal?: AbortSignal,
): Promise<Generated> {
  throwIfClosed(signal);
  const images = await encodeImages(
    result,
    output.format,
    output.compression,
    deps.live.pngWorkers,
  );
  throwIfClosed(signal);
  return { result, seed: Number(result.seed), images, format: output.format };
}

/** Runs a generation and encodes its images. */
export async function generate(
  deps: RunDeps,
  options: GenerateOptions,
  output: Output,
  request: RequestContext,
): Promise<Generated> {
  const result = await runGeneration(deps, options, request);
  return encodeResult(deps, result, output, request.signal);
}

/** Logs a planned generation at debug level, prompt included, as vLLM-Omni does. */
function logGeneration(
  log: Logger,
  { id, stream }: RequestContext,
  options: GenerateOptions,
): void {
  log.debug("generation request", {
    id,
    prompt: options.prompt,
    negative_prompt: options.negativePrompt,
    size: `${options.width}x${options.height}`,
    n: options.n,
    steps: options.steps,
    guidance_scale: options.guidanceScale,
    seed: options.seed === undefined ? undefined : String(options.seed),
    lora: options.lora?.map((l) => `${l.name ?? l.id}@${l.scale}`).join(","),
    edit: options.edit &&
      `strength ${options.edit.strength}${options.edit.mask ? ", masked" : ""}`,
    stream,
  });
}
