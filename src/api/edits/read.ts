/**
 * `POST /v1/images/edits`, its body read: `multipart/form-data` (files, as the openai SDKs and
 * curl send them) or JSON (OpenAI's form, images as data URLs), both turned into the same checked
 * fields plus the uploaded bytes. Form values arrive as text; each is read as the schema's type
 * (a number, a boolean, `lora` as JSON). No Hono types here.
 *
 * @module
 */
import type { z } from "@hono/zod-openapi";
import { ApiError, badRequest, invalidJson, validationError } from "../../errors.ts";
import { ImageEditRequestSchema } from "../../spec/schemas.gen.ts";
import type { components } from "../../spec/types.gen.ts";

type ImageRef = components["schemas"]["ImageRef"];

const FieldsSchema = ImageEditRequestSchema.omit({ images: true, mask: true, mask_image: true });
const SHAPE: Record<string, z.ZodType> = FieldsSchema.shape;

/** The request's fields other than its images. */
export type EditFields = z.infer<typeof FieldsSchema>;

/** One uploaded file, and the field it came in (for errors). */
export interface Upload {
  bytes: Uint8Array;
  param: string;
}

/** A read edit request: its fields (schema-checked), its images and its mask. */
export interface EditRequest {
  fields: EditFields;
  images: Upload[];
  mask?: Upload;
}

/** What reading needs of the HTTP request. */
export interface EditBody {
  contentType?: string;
  json(): Promise<unknown>;
  formData(): Promise<FormData>;
}

/** Field names of the images and the mask, in the multipart form (vLLM-Omni's aliases too). */
const IMAGE_FIELDS = ["image", "image[]", "url", "url[]"];
const MASK_FIELDS = ["mask", "mask_image"];

/** Reads an edit request's body; throws the documented 400/415/422. */
export function readEdit(body: EditBody): Promise<EditRequest> {
  const type = body.contentType?.split(";")[0].trim().toLowerCase();
  if (type === "multipart/form-data") return readMultipart(body);
  if (type === "application/json") return readJson(body);
  return Promise.reject(
    new ApiError(
      415,
      "The request body must be multipart/form-data (files) or application/json (images as data URLs).",
      { code: "unsupported_media_type" },
    ),
  );
}

async function readJson(body: EditBody): Promise<EditRequest> {
  let raw: unknown;
  try {
    raw = await body.json();
  } catch {
    throw invalidJson();
  }
  const parsed = ImageEditRequestSchema.safeParse(raw);
  if (!parsed.success) throw validationError(parsed.error);
  const { images, mask, mask_image, ...fields } = parsed.data;
  const maskRef = mask ?? mask_image;
  return {
    fields,
    images: images.map((ref, i) => ({
      bytes: refBytes(ref, `images[${i}]`),
      param: `images[${i}]`,
    })),
    mask: maskRef
      ? {
        bytes: refBytes(maskRef, mask ? "mask" : "mask_image"),
        param: mask ? "mask" : "mask_image",
      }
      : undefined,
  };
}

/** An `ImageRef`'s bytes: its `image_url` must be a data URL. */
function refBytes(ref: ImageRef, param: string): Uint8Array {
  if (ref.file_id !== undefined) {
    throw badRequest(
      `${param}.file_id: this server has no Files API; send the image as a data URL in image_url.`,
      param,
    );
  }
  if (ref.image_url === undefined) throw badRequest(`${param} needs an image_url.`, param);
  return dataUrlBytes(ref.image_url, param);
}

/** The bytes of a base64 `data:` URL; any other URL is refused (this server fetches nothing). */
export function dataUrlBytes(url: string, param: string): Uint8Array {
  const match = /^data:[^,;]*(?:;[^,;]*)*?;base64,/i.exec(url);
  if (!match) {
    throw badRequest(
      url.startsWith("data:")
        ? `${param} must be a base64 data URL (data:image/png;base64,...).`
        : `${param} must be a data URL (data:image/png;base64,...): this server fetches no URLs.`,
      param,
    );
  }
  try {
    return Uint8Array.fromBase64(url.slice(match[0].length).trim());
  } catch {
    throw badRequest(`${param} is not valid base64.`, param);
  }
}

async function readMultipart(body: EditBody): Promise<EditRequest> {
  let form: FormData;
  try {
    form = await body.formData();
  } catch {
    throw badRequest("The request body is not valid multipart/form-data.");
  }
  const values: Record<string, unknown> = {};
  for (const [key, value] of form) {
    if (IMAGE_FIELDS.includes(key) || MASK_FIELDS.includes(key) || key in values) continue;
    values[key] = typeof value === "string" ? formValue(key, value) : value;
  }
  const parsed = FieldsSchema.safeParse(values);
  if (!parsed.success) throw validationError(parsed.error);
  const images = await uploads(form, IMAGE_FIELDS, "image");
  if (images.length === 0) {
    throw new ApiError(422, "body.image: field required", {
      detail: [{ loc: ["body", "image"], msg: "field required", type: "value_error.missing" }],
      param: "image",
    });
  }
  const masks = await uploads(form, MASK_FIELDS, "mask");
  if (masks.length > 1) throw badRequest("Send one mask (as mask or mask_image).", "mask");
  return { fields: parsed.data, images, mask: masks[0] };
}

/**
 * A form value as the schema's type: kept as text where text is valid (`prompt: "42"` stays a
 * string), else read as JSON (`n: "2"`, `stream: "true"` or `"True"`, `lora: "{...}"`); what
 * neither fits is left for the schema to refuse.
 */
function formValue(key: string, value: string): unknown {
  const schema = SHAPE[key];
  if (!schema || schema.safeParse(value).success) return value;
  for (const text of [value, value.toLowerCase()]) {
    try {
      return JSON.parse(text);
    } catch { /* not JSON as written: try lower case (Python's True), then give up */ }
  }
  return value;
}

/**
 * The files (or data URLs) of `fields`, in order; each named `name` when it is the only one, else
 * `name[i]`.
 */
async function uploads(form: FormData, fields: string[], name: string): Promise<Upload[]> {
  const entries = fields.flatMap((field) => form.getAll(field));
  const param = (i: number) => entries.length === 1 ? name : `${name}[${i}]`;
  return await Promise.all(entries.map(async (entry, i) => ({
    bytes: typeof entry === "string"
      ? dataUrlBytes(entry, param(i))
      : new Uint8Array(await entry.arrayBuffer()),
    param: param(i),
  })));
}
