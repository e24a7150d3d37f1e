/**
 * Encoding RGB pixels to PNG, JPEG or WebP with sharp (libvips), the fastest sound encoder
 * measured here (docs/benchmarks.md: 1024² PNG in sharp vs fast-png).
 *
 * @module
 */
import sharp from "sharp";
import type { GenerateResult, RgbImage } from "../pipelines/pipeline.ts";

/** Output formats offered by the API (`output_format`). */
export type ImageFormat = "png" | "jpeg" | "webp";

/** The largest width or height each encoder can write (libwebp, libjpeg; PNG's is 2³¹ − 1). */
export const MAX_SIDE: Record<ImageFormat, number> = {
  png: 2 ** 31 - 1,
  jpeg: 65535,
  webp: 16383,
};

/** MIME type of each format. */
export const MIME_TYPES: Record<ImageFormat, string> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
};

/**
 * Encodes an image. `compression` is OpenAI's `output_compression` (0–100): the quality for
 * JPEG/WebP; for PNG, vLLM-Omni's mapping to zlib level `9 − compression // 11`, with a default
 * of level 6 when absent (libpng's usual trade-off). `size` scales the image first (previews
 * made at latent resolution are shown at the output size).
 */
export async function encodeImage(
  image: RgbImage,
  format: ImageFormat,
  compression?: number,
  size?: { width: number; height: number },
): Promise<Uint8Array> {
  let img = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (size && (size.width !== image.width || size.height !== image.height)) {
    img = img.resize(size.width, size.height, { fit: "fill" });
  }
  const quality = compression ?? 100;
  const out = format === "png"
    ? img.png({
      compressionLevel: compression === undefined
        ? 6
        : Math.max(0, Math.min(9, 9 - Math.floor(compression / 11))),
    })
    : format === "jpeg"
    ? img.jpeg({ quality: Math.max(1, quality) })
    : img.webp({ quality: Math.max(1, quality) });
  return new Uint8Array(await out.toBuffer());
}

/** Encodes every image of a result and records the time in `result.timings.encodeMs`. */
export async function encodeImages(
  result: GenerateResult,
  format: ImageFormat,
  compression?: number,
): Promise<Uint8Array[]> {
  const started = performance.now();
  const images = await Promise.all(result.images.map((im) => encodeImage(im, format, compression)));
  result.timings.encodeMs = performance.now() - started;
  return images;
}
