/**
 * {@linkcode Family}: what the server (loader, registry, LoRA, step cache, previews) and the
 * converter know of one model family, in one place. Each family is a folder of
 * `compute/families/` with its pipeline and a `mod.ts` exporting its descriptor (`satisfies
 * Family`, so that its pipeline reads the values with their own types, e.g. defaults that include
 * a size); `compute/families/mod.ts` lists them.
 *
 * @module
 */
import type { GraphSource } from "../model/model_folder.ts";
import type { Pipeline, PipelineDefaults } from "../pipelines/pipeline.ts";
import type { LatentPreview } from "../pipelines/preview.ts";
import type { Locator } from "../pipelines/signal_graph.ts";
import type { CacheBackend } from "../pipelines/step_cache.ts";
import type { VaeDecodeSettings } from "../pipelines/vae_decode.ts";

/** A model of a family whose recommended settings are known (its model card, vLLM-Omni's docs). */
export interface KnownModel {
  /** Its hub id (matched case-insensitively). */
  id: string;
  /** Filling absent request parameters, over the family's. */
  defaults: PipelineDefaults;
  /**
   * Largest width × height served by default (the server's `--max-image-pixels` overrides it):
   * the model's largest documented resolution, rounded up to a square.
   */
  maxImagePixels: number;
  /** Most steps a request runs (a distilled model's); the server lowers larger asks to it. */
  maxSteps?: number;
  /**
   * A guidance-distilled model runs at this guidance scale whatever a request asks (the server
   * warns when a request asks another).
   */
  fixedGuidance?: number;
}

/** One model family: the folders it serves, how it loads them and how it converts checkpoints. */
export interface Family {
  /** Its folder under `compute/families/`. */
  name: string;
  /**
   * The `model_index.json` `_class_name`s it serves: diffusers' own, then the names Optimum
   * (`ORT…`) and diffusers' legacy ONNX export (`Onnx…`) write, and inpainting folders' names.
   */
  pipelineClasses: readonly string[];
  /** Its models whose recommended settings are known (`compute/registry.ts` lists them all). */
  models: readonly KnownModel[];
  /**
   * What a request leaves out, under a known model's {@linkcode KnownModel.defaults}: diffusers'
   * pipeline defaults. Without width and height, the UNet's `sample_size` gives them.
   */
  defaults: Partial<PipelineDefaults> & Pick<PipelineDefaults, "steps" | "guidanceScale">;
  /**
   * A timestep-distilled model's (its scheduler Euler with trailing spacing: SD-Turbo,
   * SDXL-Turbo) in place of {@linkcode defaults}' steps and guidance.
   */
  distilledDefaults?: Pick<PipelineDefaults, "steps" | "guidanceScale">;
  /**
   * Width and height must be multiples of this (the VAE's 8 × the transformer's patch); absent
   * (the UNet families), the pipeline derives it from its UNet's depth.
   */
  sizeMultiple?: number;
  /**
   * The component folder of its denoiser: the graph LoRA adapters' `unet.`/`transformer.`
   * (Kohya `lora_unet_`/`lora_transformer_`) layers patch.
   */
  denoiser: "unet" | "transformer";
  /**
   * Where the step cache's signal is in its denoiser graph, per cache backend, by torch-export
   * node names (`compute/pipelines/signal_graph.ts`); a graph without them runs every step.
   */
  stepCacheSignal: Readonly<Record<Exclude<CacheBackend, "none">, readonly Locator[]>>;
  /** Latent→RGB factors of the family's VAE for cheap step previews. */
  preview: LatentPreview;
  /**
   * Loads a model folder's graphs into its pipeline. The pipeline module is imported on the first
   * call, so that reading this descriptor (the converter does) loads no tokenizer or runtime.
   */
  load(
    graphs: GraphSource,
    defaults?: Partial<PipelineDefaults>,
    vae?: VaeDecodeSettings,
  ): Promise<Pipeline>;
  /** What `deno task convert` makes of a diffusers pipeline folder of this family. */
  convert: {
    /** The diffusers `_class_name`s it converts (a subset of `pipelineClasses`). */
    pipelineClasses: readonly string[];
    /** Components whose safetensors become graphs. */
    components: readonly string[];
    /** Folders copied as they are (tokenizers, scheduler). */
    copy: readonly string[];
    /**
     * The tokenizer's kind: a Qwen2 tokenizer saved by the slow tokenizer (`vocab.json` and
     * `merges.txt` only) gets the `tokenizer.json` the server reads.
     */
    tokenizer: "clip" | "qwen2";
  };
}
