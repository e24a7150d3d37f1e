/**
 * Edits an image with the `openai` npm package's `images.edit` (a multipart upload, with a mask
 * when given) and saves the first result. Fields OpenAI's API lacks (`strength`, `seed`,
 * `num_inference_steps`, `negative_prompt`) go along as further form fields.
 *
 * ```sh
 * npx -y deno@2.9.6 run -A --node-modules-dir=auto examples/image_edit/openai_edit_client.ts \
 *   --image input.png --prompt "a large red circle on a green background" --output edited.png
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import OpenAI, { toFile } from "openai";

const HELP = `Usage: openai_edit_client.ts --image FILE [options]
  --image FILE            the image to edit (PNG, JPEG or WebP)
  --mask FILE             a PNG with alpha: transparent where to repaint (default: everywhere)
  --prompt TEXT           what the edited image shows
  --output FILE           where to write the PNG (default edited.png)
  --server URL            the server (default http://localhost:8091)
  --strength X            how much of the schedule runs, 0–1 (server default 0.8)
  --steps N               num_inference_steps
  --seed N                random seed
  --negative-prompt TEXT`;

/** Parses the command line into the edit's form fields (files apart). */
export function editParams(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      image: { type: "string" },
      mask: { type: "string" },
      prompt: { type: "string", default: "a large red circle on a green background" },
      output: { type: "string", default: "edited.png" },
      server: { type: "string", default: "http://localhost:8091" },
      strength: { type: "string" },
      steps: { type: "string" },
      seed: { type: "string" },
      "negative-prompt": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const number = (v: string | undefined) => v === undefined ? undefined : Number(v);
  const extra = Object.fromEntries(
    Object.entries({
      strength: number(values.strength),
      num_inference_steps: number(values.steps),
      seed: number(values.seed),
      negative_prompt: values["negative-prompt"],
    }).filter(([, v]) => v !== undefined),
  );
  return { values, extra };
}

if (import.meta.main) {
  const { values, extra } = editParams(Deno.args);
  if (values.help || !values.image) {
    console.log(HELP);
    Deno.exit(values.help ? 0 : 2);
  }
  const client = new OpenAI({ apiKey: "none", baseURL: `${values.server}/v1` });
  const file = async (path: string) => toFile(await Deno.readFile(path), path.split("/").at(-1));
  const result = await client.images.edit({
    image: await file(values.image),
    ...(values.mask ? { mask: await file(values.mask) } : {}),
    prompt: values.prompt,
    response_format: "b64_json",
    // The SDK sends every body field as a form field; these are the server's extensions.
    ...extra,
  } as OpenAI.ImageEditParamsNonStreaming);
  const b64 = result.data?.[0]?.b64_json;
  if (!b64) throw new Error("the server answered without an image");
  await Deno.writeFile(values.output, Uint8Array.fromBase64(b64));
  console.log(`wrote ${values.output}`);
}
