/**
 * `POST /v1/images/generations`: request → generation → `ImagesResponse`. No Hono types here.
 *
 * @module
 */
import { type ImageFormat, MIME_TYPES } from "../../compute/mod.ts";
import type { Engine } from "../engine.ts";
import { ApiError, badRequest } from "../errors.ts";
import type { ImageStore } from "../image_store.ts";
import type { components } from "../spec/types.gen.ts";
import { generate, type Generated, type ServingConfig } from "./generation.ts";

type ImageGenerationRequest = components["schemas"]["ImageGenerationRequest"];
type ImagesResponse = components["schemas"]["ImagesResponse"];

/** Checks that a request's `model`, when given, names the served model. */
export function checkModel(model: string | null | undefined, config: ServingConfig): void {
  if (model && model !== config.servedModelName) {
    throw new ApiError(
      400,
      `Model mismatch: request specifies '${model}' but server is running '${config.servedModelName}'.`,
      { param: "model", code: "model_not_found" },
    );
  }
}

/** Runs an image generation request. `baseUrl` is where stored images are served from. */
export async function createImages(
  req: ImageGenerationRequest,
  deps: { engine: Engine; store: ImageStore; config: ServingConfig },
  context: { baseUrl: string; signal?: AbortSignal },
): Promise<{ body: ImagesResponse; generated: Generated }> {
  deps.engine.pipeline(); // 503 before anything else, as vLLM-Omni
  checkModel(req.model, deps.config);
  if (req.stream) {
    throw badRequest("stream=true is not supported for image generation by this server.", "stream");
  }
  if (req.background === "transparent") {
    throw badRequest(
      "background='transparent' is not supported: diffusion output has no alpha channel.",
      "background",
    );
  }
  const format: ImageFormat = req.output_format === "jpg" ? "jpeg" : req.output_format ?? "png";
  const generated = await generate(deps.engine, deps.config, {
    prompt: req.prompt,
    negativePrompt: req.negative_prompt,
    size: req.size,
    n: req.n,
    steps: req.num_inference_steps,
    guidanceScale: req.guidance_scale,
    trueCfgScale: req.true_cfg_scale,
    cfgTruncation: req.cfg_truncation,
    cfgNormalization: req.cfg_normalization,
    seed: req.seed,
    scheduler: req.scheduler,
    lora: req.lora,
  }, { format, compression: req.output_compression ?? undefined, signal: context.signal });
  const useUrl = req.response_format === "url";
  const { result } = generated;
  return {
    generated,
    body: {
      created: Math.floor(Date.now() / 1000),
      data: generated.images.map((bytes) =>
        useUrl
          ? {
            b64_json: null,
            url: `${context.baseUrl}/v1/images/files/${deps.store.put(bytes, MIME_TYPES[format])}`,
            revised_prompt: null,
          }
          : { b64_json: bytes.toBase64(), url: null, revised_prompt: null }
      ),
      size: `${result.width}x${result.height}`,
      output_format: format,
      seed: Number(result.seed),
    },
  };
}
