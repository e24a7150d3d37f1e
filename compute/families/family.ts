/**
 * {@linkcode Family}: what the loader and the converter know of one model family, in one place.
 * Each family is a folder of `compute/families/` with its pipeline and a `mod.ts` exporting its
 * descriptor; `compute/families/mod.ts` lists them.
 *
 * @module
 */
import type { GraphSource } from "../model/model_folder.ts";
import type { Pipeline, PipelineDefaults } from "../pipelines/pipeline.ts";
import type { VaeDecodeSettings } from "../pipelines/vae_decode.ts";

/** One model family: the folders it serves, how it loads them and how it converts checkpoints. */
export interface Family {
  /** Its folder under `compute/families/`. */
  name: string;
  /**
   * The `model_index.json` `_class_name`s it serves: diffusers' own, then the names Optimum
   * (`ORT…`) and diffusers' legacy ONNX export (`Onnx…`) write, and inpainting folders' names.
   */
  pipelineClasses: readonly string[];
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
