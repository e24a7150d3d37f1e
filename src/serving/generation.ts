/**
 * Wire parameters → a checked generation, shared by the Images and Chat endpoints: the served
 * model's defaults fill what is absent, and semantic limits (size format, pixel limit, size
 * multiple, LoRA) become 400s before anything runs.
 *
 * @module
 */
import {
  encodeImages,
  type GenerateResult,
  type ImageFormat,
  type SchedulerName,
} from "../../compute/mod.ts";
import type { Engine } from "../engine.ts";
import { badRequest } from "../errors.ts";
import { parseSize } from "../size.ts";
import type { components } from "../spec/types.gen.ts";

type LoraRequest = components["schemas"]["LoraRequest"];

/** Server-wide settings the serving logic needs. */
export interface ServingConfig {
  servedModelName: string;
  maxImagePixels: number;
}

/** What both endpoints ask for, in wire terms, after schema validation. */
export interface WireGeneration {
  prompt: string;
  negativePrompt?: string | null;
  size?: string | null;
  width?: number | null;
  height?: number | null;
  n?: number | null;
  steps?: number | null;
  guidanceScale?: number | null;
  trueCfgScale?: number | null;
  cfgTruncation?: number | null;
  /** diffusers takes a boolean here and uses it as a number: `true` is 1. */
  cfgNormalization?: number | boolean | null;
  seed?: number | null;
  scheduler?: SchedulerName | null;
  lora?: LoraRequest | null;
}

/** Encoded images plus what the response reports. */
export interface Generated {
  result: GenerateResult;
  images: Uint8Array[];
  format: ImageFormat;
}

/** Validates a LoRA object as vLLM-Omni does, then refuses it: adapters are not applied yet. */
function rejectLora(lora: LoraRequest): never {
  // vLLM-Omni accepts these aliases; the first non-empty string wins.
  const first = (...keys: string[]) =>
    keys.map((k) => lora[k]).find((v): v is string => typeof v === "string" && v !== "");
  const name = first("name", "lora_name", "adapter");
  const path = first("local_path", "path", "lora_path", "lora_local_path");
  if (!name && !path) {
    throw badRequest("Invalid lora object: both name and path are required.", "lora");
  }
  throw badRequest(
    `LoRA adapters are not supported by this server yet (requested '${
      name ?? path
    }'). Remove the 'lora' field.`,
    "lora",
  );
}

/** Resolves, checks and runs one generation; encodes the images. */
export async function generate(
  engine: Engine,
  config: ServingConfig,
  wire: WireGeneration,
  output: { format: ImageFormat; compression?: number; signal?: AbortSignal },
): Promise<Generated> {
  const pipeline = engine.pipeline();
  if (wire.lora) rejectLora(wire.lora);
  let { width, height } = { width: wire.width ?? undefined, height: wire.height ?? undefined };
  if (wire.size && wire.size !== "auto" && (width === undefined || height === undefined)) {
    const parsed = parseSize(wire.size);
    width ??= parsed.width;
    height ??= parsed.height;
  }
  width ??= height ?? pipeline.defaults.width;
  height ??= width ?? pipeline.defaults.height;
  if (width * height > config.maxImagePixels) {
    throw badRequest(
      `Requested image size ${width}x${height} exceeds the maximum allowed size of ${config.maxImagePixels} pixels. You can reduce the requested size or increase the server's --max-image-pixels limit.`,
      "size",
    );
  }
  const m = pipeline.sizeMultiple;
  if (width % m !== 0 || height % m !== 0) {
    throw badRequest(
      `Requested image size ${width}x${height} is not supported by ${config.servedModelName}: width and height must be multiples of ${m}.`,
      "size",
    );
  }
  const result = await engine.generate({
    prompt: wire.prompt,
    negativePrompt: wire.negativePrompt ?? undefined,
    width,
    height,
    n: wire.n ?? 1,
    steps: wire.steps ?? undefined,
    guidanceScale: wire.guidanceScale ?? undefined,
    trueCfgScale: wire.trueCfgScale ?? undefined,
    cfgTruncation: wire.cfgTruncation ?? undefined,
    cfgNormalization: wire.cfgNormalization == null ? undefined : Number(wire.cfgNormalization),
    seed: wire.seed ?? undefined,
    scheduler: wire.scheduler ?? undefined,
    signal: output.signal,
  });
  const images = await encodeImages(result, output.format, output.compression);
  return { result, images, format: output.format };
}
