/**
 * The one translation from a request's generation fields (the same snake_case names on both
 * endpoints) to the engine's options: the served model's defaults fill what is absent, and
 * semantic limits (size format, pixel limit, size multiple) and LoRA sources become 400s before
 * anything is queued. Also the one place a cancelled or timed-out generation becomes its HTTP error.
 *
 * @module
 */
import {
  CancelledError,
  type GenerateOptions,
  type GenerateResult,
  type ImageFormat,
  type LoraSpec,
  type PngWorkers,
} from "../../compute/mod.ts";
import { encodeImages } from "../../compute/image/mod.ts";
import type { Engine } from "../engine/engine.ts";
import type { ModelInfo } from "../engine/protocol.ts";
import { ApiError, badRequest } from "../errors.ts";
import { parseSize } from "../size.ts";
import { LoraResolver } from "./lora.ts";
import type { components } from "../spec/types.gen.ts";

type ChatImageParams = components["schemas"]["ChatImageParams"];

/** Server-wide settings the serving logic needs. */
export interface ServingConfig {
  servedModelName: string;
  /** Other names a request's `model` may give (the `--model` value, without a served name). */
  modelAliases?: readonly string[];
  maxImagePixels: number;
  /** Per-request time limit in seconds (`--request-timeout`); absent: none. */
  requestTimeoutS?: number;
  /** Where request adapters may come from (`--lora-root`, `--lora-modules`); absent: nowhere. */
  lora?: LoraResolver;
  /** Workers that deflate large PNGs in stripes on several cores; absent: one stream (sharp). */
  pngWorkers?: PngWorkers;
}

/** The generation fields both endpoints accept, by their wire names. */
export type GenerationFields =
  & Pick<
    ChatImageParams,
    | "negative_prompt"
    | "size"
    | "width"
    | "height"
    | "num_inference_steps"
    | "guidance_scale"
    | "true_cfg_scale"
    | "cfg_truncation"
    | "cfg_normalization"
    | "seed"
    | "scheduler"
    | "lora"
  >
  & {
    n?: number | null;
    /** The request's `model`: the served model, or the name of an adapter to apply. */
    model?: string | null;
  };

/** Encoded images plus what the response reports. */
export interface Generated {
  result: GenerateResult;
  images: Uint8Array[];
  format: ImageFormat;
}

/** Request fields → engine options, checked against the model and the server's limits. */
export async function toGenerateOptions(
  prompt: string,
  fields: GenerationFields,
  model: ModelInfo,
  config: ServingConfig,
): Promise<GenerateOptions> {
  let { width, height } = { width: fields.width ?? undefined, height: fields.height ?? undefined };
  if (fields.size && fields.size !== "auto" && (width === undefined || height === undefined)) {
    const parsed = parseSize(fields.size);
    width ??= parsed.width;
    height ??= parsed.height;
  }
  width ??= height ?? model.defaults.width;
  height ??= width ?? model.defaults.height;
  if (width * height > config.maxImagePixels) {
    throw badRequest(
      `Requested image size ${width}x${height} exceeds the maximum allowed size of ${config.maxImagePixels} pixels. You can reduce the requested size or increase the server's --max-image-pixels limit.`,
      "size",
    );
  }
  const m = model.sizeMultiple;
  if (width % m !== 0 || height % m !== 0) {
    throw badRequest(
      `Requested image size ${width}x${height} is not supported by ${config.servedModelName}: width and height must be multiples of ${m}.`,
      "size",
    );
  }
  return {
    prompt,
    negativePrompt: fields.negative_prompt ?? undefined,
    width,
    height,
    n: fields.n ?? 1,
    steps: fields.num_inference_steps ?? undefined,
    guidanceScale: fields.guidance_scale ?? undefined,
    trueCfgScale: fields.true_cfg_scale ?? undefined,
    cfgTruncation: fields.cfg_truncation ?? undefined,
    cfgNormalization: fields.cfg_normalization == null
      ? undefined
      : Number(fields.cfg_normalization),
    seed: fields.seed ?? undefined,
    scheduler: fields.scheduler ?? undefined,
    // Last: the only check that touches the file system.
    lora: await resolveLora(fields.lora, fields.model, config),
  };
}

/**
 * The adapters a request applies. A `model` that names a registered adapter (as `/v1/models`
 * lists them) means the served model with that adapter at scale 1; a `lora` field sent with it
 * must apply that same adapter (at the scale it gives), else the two contradict each other.
 */
async function resolveLora(
  field: unknown,
  model: string | null | undefined,
  config: ServingConfig,
): Promise<LoraSpec[] | undefined> {
  const resolver = config.lora ?? LoraResolver.none;
  const requested = await resolver.resolve(field);
  if (!model || model === config.servedModelName || !resolver.names.includes(model)) {
    return requested;
  }
  const [named] = (await resolver.resolve({ name: model }))!;
  if (!requested) return [named];
  if (requested.some((spec) => spec.files.weights === named.files.weights)) return requested;
  throw badRequest(
    `model '${model}' is a LoRA adapter of ${config.servedModelName}, but the lora field does not apply it. Add {"name": "${model}"} to lora, or set model to '${config.servedModelName}'.`,
    "model",
  );
}

/**
 * Runs one generation on the engine, cancelled when `signal` aborts (the client left) or when
 * the server's request timeout passes. A cancellation becomes 499 (logged; nobody reads it) or
 * 504 in the documented error shape.
 */
export async function runGeneration(
  engine: Engine,
  config: ServingConfig,
  options: GenerateOptions,
  signal?: AbortSignal,
): Promise<GenerateResult> {
  const timeout = config.requestTimeoutS
    ? AbortSignal.timeout(config.requestTimeoutS * 1000)
    : undefined;
  const signals = [signal, timeout].filter((s): s is AbortSignal => s !== undefined);
  try {
    return await engine.generate({ ...options, signal: AbortSignal.any(signals) });
  } catch (e) {
    if (!(e instanceof CancelledError)) throw e;
    if (timeout?.aborted && !signal?.aborted) {
      throw new ApiError(
        504,
        `The generation did not finish within the server's request timeout of ${config.requestTimeoutS} s.`,
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
export function throwIfClosed(signal?: AbortSignal): void {
  if (signal?.aborted) throw clientClosed();
}

/** Runs a generation and encodes its images. */
export async function generate(
  engine: Engine,
  config: ServingConfig,
  options: GenerateOptions,
  output: { format: ImageFormat; compression?: number; signal?: AbortSignal },
): Promise<Generated> {
  const result = await runGeneration(engine, config, options, output.signal);
  throwIfClosed(output.signal);
  const images = await encodeImages(
    result,
    output.format,
    output.compression,
    config.pngWorkers,
  );
  throwIfClosed(output.signal);
  return { result, images, format: output.format };
}
