/**
 * Decoding the images a request edits, with sharp (libvips): PNG, JPEG and WebP, turned the way
 * their EXIF orientation says (as diffusers' `load_image` does). Every check reads the file's
 * header only, so an upload that is not an image, or claims more than
 * {@linkcode MAX_EDIT_INPUT_PIXELS}, is refused before a pixel is decoded; sharp's own
 * `limitInputPixels` guards the decode itself. Failures are {@linkcode InvalidInputError}s naming
 * the request field.
 *
 * @module
 */
import sharp, { type Metadata, type Sharp } from "sharp";
import { InvalidInputError } from "../errors.ts";
import { MAX_EDIT_INPUT_PIXELS } from "../limits.ts";
import type { RgbImage } from "../pipelines/pipeline.ts";

/** What a file's header says. */
export interface ImageHeader {
  /** Width and height as displayed (after the EXIF orientation). */
  width: number;
  height: number;
  /** Whether it has an alpha channel (a mask must). */
  hasAlpha: boolean;
}

/** The formats accepted, as sharp names them (OpenAI takes PNG, JPEG and WebP). */
const FORMATS = new Set(["png", "jpeg", "webp"]);

const SHARP_OPTIONS = { limitInputPixels: MAX_EDIT_INPUT_PIXELS, autoOrient: true } as const;

function invalid(message: string, param: string): InvalidInputError {
  const error = new InvalidInputError(message);
  error.param = param;
  return error;
}

/**
 * Reads `bytes`' header: throws unless it is a PNG, JPEG or WebP of at most
 * {@linkcode MAX_EDIT_INPUT_PIXELS} pixels. `param` names the field in errors.
 */
export async function readImageHeader(bytes: Uint8Array, param: string): Promise<ImageHeader> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { ...SHARP_OPTIONS, limitInputPixels: false }).metadata();
  } catch {
    throw invalid(`${param} is not an image: send a PNG, JPEG or WebP file.`, param);
  }
  if (!FORMATS.has(meta.format)) {
    throw invalid(
      `${param} is a ${meta.format.toUpperCase()} image; send a PNG, JPEG or WebP file.`,
      param,
    );
  }
  const { width, height } = meta.autoOrient;
  if (width * height > MAX_EDIT_INPUT_PIXELS) {
    throw invalid(
      `${param} is ${width}x${height} = ${
        width * height
      } pixels; at most ${MAX_EDIT_INPUT_PIXELS} (${
        Math.sqrt(MAX_EDIT_INPUT_PIXELS)
      }²) are accepted.`,
      param,
    );
  }
  return { width, height, hasAlpha: meta.hasAlpha };
}

/** Decodes with sharp to 8-bit channels, turning a broken file into the request's error. */
async function raw(
  pipeline: Sharp,
  param: string,
): Promise<{ data: Uint8Array; channels: number }> {
  try {
    const { data, info } = await pipeline.raw({ depth: "uchar" }).toBuffer({
      resolveWithObject: true,
    });
    // A copy: sharp's Buffer may be a view of a larger pool, which must not cross threads.
    return { data: new Uint8Array(data), channels: info.channels };
  } catch {
    throw invalid(`${param} could not be decoded: the file is damaged or truncated.`, param);
  }
}

/**
 * Decodes an image (checked with {@linkcode readImageHeader}) to RGB at `size`, stretched to it
 * as diffusers' image processor resizes; alpha is dropped (PIL's `convert("RGB")`).
 */
export async function decodeImage(
  bytes: Uint8Array,
  size: { width: number; height: number },
  param: string,
): Promise<RgbImage> {
  const { data } = await raw(
    sharp(bytes, SHARP_OPTIONS).removeAlpha().toColourspace("srgb")
      .resize(size.width, size.height, { fit: "fill" }),
    param,
  );
  return { width: size.width, height: size.height, data };
}

/**
 * Decodes a mask (checked with {@linkcode readImageHeader}; it must have alpha) to one byte per
 * pixel at `size`: 255 − alpha, so OpenAI's transparent pixels (edit here) become ≥ 128
 * (repaint) and opaque ones < 128 (keep).
 */
export async function decodeMask(
  bytes: Uint8Array,
  size: { width: number; height: number },
  param: string,
): Promise<Uint8Array> {
  const { data, channels } = await raw(
    sharp(bytes, SHARP_OPTIONS).ensureAlpha().resize(size.width, size.height, { fit: "fill" }),
    param,
  );
  const mask = new Uint8Array(size.width * size.height);
  // Alpha is the last channel, whatever the colour channels are (grey, RGB).
  for (let i = 0; i < mask.length; i++) mask[i] = 255 - data[i * channels + channels - 1];
  return mask;
}
