/**
 * Every limit of a generation request and of the adapter cache, defined once. The server (`src/`)
 * and the worker read them from here; `openapi.yaml` states the ones a request sees, and
 * `scripts/gen_spec.ts` (`deno task gen`, and `src/spec/spec_test.ts` with it) fails when the spec
 * says otherwise. The CLI's defaults (`src/cli.ts`, and the README's flag table generated from it)
 * are written from these values.
 *
 * This module imports nothing, so the spec generator and the HTTP thread's start-up read it for
 * free.
 *
 * @module
 */

/** Longest prompt (and negative prompt) in characters; a chat request's user messages joined. */
export const MAX_PROMPT_CHARS = 32000;

/** Output formats offered by the API (`output_format`). */
export type ImageFormat = "png" | "jpeg" | "webp";

/** The largest width or height each encoder can write (libwebp, libjpeg; PNG's is 2³¹ − 1). */
export const MAX_SIDE: Readonly<Record<ImageFormat, number>> = {
  png: 2 ** 31 - 1,
  jpeg: 65535,
  webp: 16383,
};

/**
 * The pixel limit (width × height) of models without a card, and of the SD family (trained at
 * ≤ 768²); the server's `--max-image-pixels` overrides it.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024;

/** Most LoRA adapters one request may apply. */
export const MAX_LORAS_PER_REQUEST = 8;

/** Largest |scale| of a LoRA adapter. */
export const MAX_LORA_SCALE = 10;

/** Bounds on adapters and their cache. */
export interface LoraLimits {
  /** Merged variants kept (vLLM's `--max-cpu-loras`); 0 merges anew for every batch. */
  maxVariants: number;
  /** Bytes of merged graphs kept. */
  cacheBytes: number;
  /** Largest adapter file read. */
  maxFileBytes: number;
}

/** The defaults of {@linkcode LoraLimits} (the server's `--max-cpu-loras`, `--max-lora-*-mb`). */
export const DEFAULT_LORA_LIMITS: Readonly<LoraLimits> = {
  maxVariants: 4,
  cacheBytes: 4 * 2 ** 30,
  maxFileBytes: 2 ** 30,
};

/**
 * Largest width × height of an image a request uploads to edit (and of its mask), read from the
 * file's header before anything is decoded: 4096² (a 64 MiB RGBA buffer at most), so a small
 * file that claims huge dimensions is refused for the few bytes of its header.
 */
export const MAX_EDIT_INPUT_PIXELS = 4096 * 4096;

/**
 * Largest request body of `POST /v1/images/edits` (its images, as files or data URLs): 32 MiB,
 * against 1 MiB for the other endpoints, whose bodies are only fields.
 */
export const MAX_EDIT_BODY_BYTES = 32 * 1024 * 1024;
