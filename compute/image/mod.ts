/**
 * Image encoding and decoding, compute's second public entry point (see `compute/mod.ts`): PNG,
 * JPEG and WebP with sharp (libvips), decoded for edits with a pixel cap read from the header
 * first (`decode.ts`); large PNGs are deflated in stripes on the `PngWorkers` of
 * `compute/mod.ts` when given. Kept apart because loading sharp takes ~0.2 s (194 ms here), which
 * neither the inference worker nor the server's start-up should pay.
 *
 * @module
 */
export { encodeImage, encodeImages, MIME_TYPES } from "./encode.ts";
export { decodeImage, decodeMask, type ImageHeader, readImageHeader } from "./decode.ts";
