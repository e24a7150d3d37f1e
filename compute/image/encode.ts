/**
 * Encoding RGB pixels to PNG, JPEG or WebP with sharp (libvips), the fastest sound encoder
 * measured here (docs/benchmarks.md: 1024² PNG in sharp vs fast-png), or, for large PNGs when
 * given {@linkcode PngWorkers}, in stripes on several cores.
 *
 * @module
 */
import sharp from "sharp";
import type { ImageFormat } from "../limits.ts";
import type { GenerateResult, RgbImage } from "../pipelines/pipeline.ts";
import { MIN_STRIPED_PIXELS, type PngWorkers } from "./png_workers.ts";

/** MIME type of each format. */
export const MIME_TYPES: Record<ImageFormat, string> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
};

/**
 * zlib level of PNGs when the request gives no `output_compression`: 1, with no row filters. At
 * 1024² it encodes in ~30 ms against ~62 ms at libpng's usual level 6, for files 1.25–1.5× larger
 * (docs/benchmarks.md, "Encoding"); `output_compression` asks for smaller files.
 */
export const DEFAULT_PNG_LEVEL = 1;
/** JPEG and WebP quality when the request gives no `output_compression` (OpenAI's is 100). */
export const DEFAULT_QUALITY = 90;
/**
 * libwebp's effort (0–6; sharp's default is 4): 2 made the same file size as 4 on generated images
 * here in less than half the time.
 */
const WEBP_EFFORT = 2;

/**
 * Encodes an image. `compression` is OpenAI's `output_compression` (0–100): the quality for
 * JPEG/WebP ({@linkcode DEFAULT_QUALITY} when absent); for PNG, vLLM-Omni's mapping to zlib level
 * `9 − compression // 11` ({@linkcode DEFAULT_PNG_LEVEL} when absent). `size` scales the image
 * first (previews made at latent resolution are shown at the output size). PNGs of at least
 * {@linkcode MIN_STRIPED_PIXELS} are deflated on `pngWorkers` when given.
 */
export async function encodeImage(
  image: RgbImage,
  format: ImageFormat,
  compression?: number,
  size?: { width: number; height: number },
  pngWorkers?: PngWorkers,
): Promise<Uint8Array> {
  const resized = size && (size.width !== image.width || size.height !== image.height);
  const pngLevel = compression === undefined
    ? DEFAULT_PNG_LEVEL
    : Math.max(0, Math.min(9, 9 - Math.floor(compression / 11)));
  if (
    format === "png" && pngWorkers && !resized &&
    image.width * image.height >= MIN_STRIPED_PIXELS
  ) {
    return await pngWorkers.encode(image, pngLevel);
  }
  let img = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (resized) img = img.resize(size.width, size.height, { fit: "fill" });
  const quality = Math.max(1, compression ?? DEFAULT_QUALITY);
  const out = format === "png"
    ? img.png({ compressionLevel: pngLevel, adaptiveFiltering: false })
    : format === "jpeg"
    ? img.jpeg({ quality })
    : img.webp({ quality, effort: WEBP_EFFORT });
  return new Uint8Array(await out.toBuffer());
}

/** Encodes every image of a result and records the time in `result.timings.encodeMs`. */
export async function encodeImages(
  result: GenerateResult,
  format: ImageFormat,
  compression?: number,
  pngWorkers?: PngWorkers,
): Promise<Uint8Array[]> {
  const started = performance.now();
  const images = await Promise.all(
    result.images.map((im) => encodeImage(im, format, compression, undefined, pngWorkers)),
  );
  result.timings.encodeMs = performance.now() - started;
  return images;
}
