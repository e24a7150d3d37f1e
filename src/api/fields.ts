/**
 * The generation fields both endpoints accept (the same snake_case names), turned into the
 * engine's options: the served model's defaults fill what is absent, and semantic limits (size
 * format, pixel limit, size multiple), the request's `model` and LoRA sources become 400s before
 * anything is queued. Each endpoint's `plan` is the one caller.
 *
 * @module
 */
import {
  type CacheConfig,
  type GenerateOptions,
  type LoraSpec,
  parseCacheConfig,
} from "../../compute/mod.ts";
import type { ServingConfig } from "../deps.ts";
import type { ModelInfo } from "../engine/protocol.ts";
import { ApiError, badRequest } from "../errors.ts";
import type { Logger } from "../log.ts";
import { parseSize } from "../size.ts";
import type { components } from "../spec/types.gen.ts";
import { LoraResolver } from "./lora.ts";

type ChatImageParams = components["schemas"]["ChatImageParams"];

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
    | "cache"
  >
  & {
    n?: number | null;
    /** The request's `model`: the served model, or the name of an adapter to apply. */
    model?: string | null;
  };

/**
 * Checks that a request's `model`, when given, names the served model (or one of its aliases) or
 * one of its registered LoRA adapters (all listed by `/v1/models`).
 */
export function checkModel(model: string | null | undefined, config: ServingConfig): void {
  if (!model || model === config.servedModelName || config.modelAliases?.includes(model)) return;
  const adapters = config.lora?.names ?? [];
  if (adapters.includes(model)) return;
  throw new ApiError(
    400,
    `Model mismatch: request specifies '${model}' but server is running '${config.servedModelName}'.` +
      (adapters.length ? ` Its LoRA adapters are ${adapters.join(", ")}.` : ""),
    { param: "model", code: "model_not_found" },
  );
}

/** The image size a request asks for, checked against the model and the server's limits. */
function imageSize(
  fields: GenerationFields,
  model: ModelInfo,
  config: ServingConfig,
): { width: number; height: number } {
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
  return { width, height };
}

/**
 * The steps a request runs: what it asks, lowered to the model's cap with a warning (a distilled
 * model gains nothing from more, and clients that send a documented 50 still get an image).
 */
function steps(
  fields: GenerationFields,
  config: ServingConfig,
  log?: Pick<Logger, "warning">,
): number | undefined {
  const asked = fields.num_inference_steps ?? undefined;
  if (asked === undefined || config.maxSteps === undefined || asked <= config.maxSteps) {
    return asked;
  }
  log?.warning(
    `num_inference_steps ${asked} lowered to ${config.maxSteps}: the most ${config.servedModelName} runs`,
  );
  return config.maxSteps;
}

/**
 * The guidance scale a request runs at: a guidance-distilled model's fixed one, with a warning
 * when the request asked another, else the request's.
 */
function guidance(
  fields: GenerationFields,
  config: ServingConfig,
  log?: Pick<Logger, "warning">,
): number | undefined {
  const asked = fields.guidance_scale ?? undefined;
  if (config.fixedGuidance === undefined) return asked;
  if (asked !== undefined && asked !== config.fixedGuidance) {
    log?.warning(
      `guidance_scale ${asked} ignored: ${config.servedModelName} is guidance-distilled and runs at ${config.fixedGuidance}`,
    );
  }
  return config.fixedGuidance;
}

/**
 * Request fields → engine options, checked against the model and the server's limits. `log` hears
 * what the request asked that the model overrides.
 */
export async function toGenerateOptions(
  prompt: string,
  fields: GenerationFields,
  model: ModelInfo,
  config: ServingConfig,
  log?: Pick<Logger, "warning">,
): Promise<GenerateOptions> {
  return {
    prompt,
    negativePrompt: fields.negative_prompt ?? undefined,
    ...imageSize(fields, model, config),
    n: fields.n ?? 1,
    steps: steps(fields, config, log),
    guidanceScale: guidance(fields, config, log),
    trueCfgScale: fields.true_cfg_scale ?? undefined,
    cfgTruncation: fields.cfg_truncation ?? undefined,
    cfgNormalization: fields.cfg_normalization == null
      ? undefined
      : Number(fields.cfg_normalization),
    seed: fields.seed ?? undefined,
    scheduler: fields.scheduler ?? undefined,
    cache: requestCache(fields.cache, config.cache),
    // Last: the only check that touches the file system.
    lora: await resolveLora(fields.lora, fields.model, config),
  };
}

/**
 * The step cache a request runs with: its `cache` field (a backend name, or settings over the
 * server's for the same backend, else over that backend's defaults), or the server's.
 */
export function requestCache(
  field: GenerationFields["cache"],
  server: CacheConfig | undefined,
): CacheConfig | undefined {
  if (field == null) return server;
  const given: Record<string, unknown> = typeof field === "string" ? { backend: field } : field;
  if ((given.backend ?? server?.backend ?? "none") === "none") {
    if (given.backend === undefined && Object.keys(given).length > 0) {
      throw badRequest(
        "cache: give a backend (tea_cache or cache_dit): this server caches no steps by default",
        "cache",
      );
    }
    return undefined;
  }
  try {
    return parseCacheConfig(given, server ?? "none");
  } catch (e) {
    throw badRequest(`cache: ${(e as Error).message}`, "cache");
  }
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
