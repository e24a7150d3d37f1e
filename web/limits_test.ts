/**
 * The playground's form states the API's limits in its own attributes (min, max, maxlength) and
 * its checks read them from there; this test fails when they drift from openapi.yaml and
 * compute/limits.ts.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { MAX_LORA_SCALE } from "../compute/mod.ts";

const html = await Deno.readTextFile(new URL("./index.html", import.meta.url));
const spec = parse(await Deno.readTextFile(new URL("../openapi.yaml", import.meta.url)));
const request = spec.components.schemas.ImageGenerationRequest.properties;

/** The attributes of the form control with `id`. */
function attributes(id: string): Record<string, string> {
  const tag = html.match(new RegExp(`<(?:input|textarea)\\b[^>]*\\bid="${id}"[^>]*>`))?.[0];
  assert.ok(tag, `web/index.html has no input or textarea #${id}`);
  return Object.fromEntries([...tag.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

/** The bounds of a form control as the spec's keywords. */
function bounds(id: string): Record<string, number> {
  const a = attributes(id), out: Record<string, number> = {};
  if (a.min !== undefined) out.minimum = Number(a.min);
  if (a.max !== undefined) out.maximum = Number(a.max);
  if (a.maxlength !== undefined) out.maxLength = Number(a.maxlength);
  return out;
}

/** The spec's bounds of a request field. */
function specBounds(field: string): Record<string, number> {
  const { minimum, maximum, maxLength } = request[field];
  return Object.fromEntries(
    Object.entries({ minimum, maximum, maxLength }).filter(([, v]) => v !== undefined),
  );
}

Deno.test("the playground's fields have the spec's bounds", () => {
  const fields: Record<string, string> = {
    prompt: "prompt",
    negative: "negative_prompt",
    steps: "num_inference_steps",
    guidance: "guidance_scale",
    "true-cfg": "true_cfg_scale",
    n: "n",
  };
  for (const [id, field] of Object.entries(fields)) {
    assert.equal(attributes(id).name, field, `#${id} sends ${field}`);
    assert.deepEqual(bounds(id), specBounds(field), `#${id} against ${field}`);
  }
  assert.equal(bounds("previews").maximum, request.partial_images.maximum);
  assert.deepEqual(bounds("lora-scale"), { minimum: -MAX_LORA_SCALE, maximum: MAX_LORA_SCALE });
  // The edit mode's strength: within (0, 1] of /v1/images/edits.
  const strength = spec.components.schemas.ImageEditRequest.properties.strength;
  assert.equal(bounds("strength").maximum, strength.maximum);
  assert.ok(bounds("strength").minimum > strength.exclusiveMinimum);
});
