/**
 * `GET /v1/models` (the served model, with its family, limits and defaults once loaded, then each
 * `--lora-modules` adapter as a model whose `parent` is the served model, as vLLM lists LoRAs) and
 * `GET /v1/images/files/{id}` (images kept for `response_format: url`).
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../app_env.ts";
import type { AppDeps } from "../deps.ts";
import { ApiError } from "../errors.ts";

/** Adds the model list and stored-image routes. */
export function modelRoutes(app: OpenAPIHono<AppEnv>, deps: AppDeps): void {
  app.get("/v1/images/files/:id", async (c) => {
    const image = await deps.store.get(c.req.param("id"));
    if (!image) throw new ApiError(404, "Image not found or expired.", { code: "not_found" });
    return c.body(image.bytes.slice().buffer, 200, {
      "content-type": image.mime,
      "cache-control": "private, max-age=3600",
    });
  });

  const created = Math.floor(Date.now() / 1000);
  app.get("/v1/models", (c) => {
    const state = deps.engine.state;
    const loaded = state.status === "ready"
      ? {
        family: state.model.family,
        size_multiple: state.model.sizeMultiple,
        max_image_pixels: deps.config.maxImagePixels,
        max_edit_images: state.model.maxEditImages,
        defaults: {
          size: `${state.model.defaults.width}x${state.model.defaults.height}`,
          num_inference_steps: state.model.defaults.steps,
          guidance_scale: state.model.defaults.guidanceScale,
          ...(state.model.defaults.trueCfgScale === undefined
            ? {}
            : { true_cfg_scale: state.model.defaults.trueCfgScale }),
        },
      }
      : {};
    const base = deps.config.servedModelName;
    const adapters = (deps.config.lora?.modules ?? []).map(({ name, root }) => ({
      id: name,
      object: "model",
      created,
      owned_by: "denoise",
      root,
      parent: base,
    }));
    return c.json({
      object: "list",
      data: [{
        id: base,
        object: "model",
        created,
        owned_by: "denoise",
        root: deps.config.modelRoot,
        parent: null,
        ...loaded,
      }, ...adapters],
    });
  });
}
