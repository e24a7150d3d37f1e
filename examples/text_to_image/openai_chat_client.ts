/**
 * The text-to-image example's chat client (vLLM-Omni's `openai_chat_client.py`), on the `openai`
 * npm package: asks `/v1/chat/completions` for an image and saves the first one.
 *
 * ```sh
 * npx -y deno@2.9.6 run -A --node-modules-dir=auto examples/text_to_image/openai_chat_client.ts \
 *   --prompt "a red circle on a white background" \
 *   --lora-path shapes-palette-swap --lora-name palette --lora-scale 1.0 --output output.png
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import OpenAI from "openai";

/**
 * A caption of the embedded shapes-tiny model's grammar (models/shapes-tiny/README.md), which it
 * draws well; vLLM-Omni's "A beautiful landscape painting" suits Qwen-Image, not it.
 */
export const DEFAULT_PROMPT = "a large yellow star in the top left on a black background";

const HELP = `Usage: openai_chat_client.ts [options]
  --prompt TEXT           what to draw (default "${DEFAULT_PROMPT}")
  --output FILE           where to write the PNG (default output.png)
  --server URL            the server (default http://localhost:8091)
  --height N, --width N   image size in pixels
  --steps N               num_inference_steps
  --true-cfg-scale X      Qwen-Image's CFG scale
  --seed N                random seed
  --negative-prompt TEXT
  --lora-path PATH        a LoRA adapter on the server (folder or .safetensors)
  --lora-name NAME        its name (default: the path's last part)
  --lora-scale X          its strength (default 1.0)`;

/** Parses the command line into the chat request's image parameters. */
export function requestParams(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      prompt: { type: "string", default: DEFAULT_PROMPT },
      output: { type: "string", default: "output.png" },
      server: { type: "string", default: "http://localhost:8091" },
      height: { type: "string" },
      width: { type: "string" },
      steps: { type: "string" },
      "true-cfg-scale": { type: "string" },
      seed: { type: "string" },
      "negative-prompt": { type: "string" },
      "lora-path": { type: "string" },
      "lora-name": { type: "string" },
      "lora-scale": { type: "string", default: "1.0" },
      help: { type: "boolean", short: "h" },
    },
  });
  const number = (v: string | undefined) => v === undefined ? undefined : Number(v);
  const loraPath = values["lora-path"];
  const extra = {
    height: number(values.height),
    width: number(values.width),
    num_inference_steps: number(values.steps),
    true_cfg_scale: number(values["true-cfg-scale"]),
    seed: number(values.seed),
    negative_prompt: values["negative-prompt"],
    lora: loraPath === undefined ? undefined : {
      name: values["lora-name"] ?? loraPath.replace(/\/+$/, "").split("/").at(-1),
      local_path: loraPath,
      scale: Number(values["lora-scale"]),
    },
  };
  return { values, extra };
}

if (import.meta.main) {
  const { values, extra } = requestParams(Deno.args);
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const client = new OpenAI({
    baseURL: `${values.server.replace(/\/+$/, "")}/v1`,
    apiKey: Deno.env.get("OPENAI_API_KEY") ?? "none",
  });
  const { data: models } = await client.models.list();
  const completion = await client.chat.completions.create({
    model: models[0]?.id ?? "default",
    messages: [{ role: "user", content: values.prompt }],
    // Image parameters travel in the body next to the messages, like Python's extra_body.
    ...JSON.parse(JSON.stringify(extra)),
  });
  const content = completion.choices[0].message.content as unknown;
  const url = Array.isArray(content) ? content[0]?.image_url?.url : undefined;
  if (typeof url !== "string") {
    console.error(`no image in the response: ${JSON.stringify(completion).slice(0, 300)}`);
    Deno.exit(1);
  }
  await Deno.writeFile(values.output, Uint8Array.fromBase64(url.slice(url.indexOf(",") + 1)));
  console.log(`wrote ${values.output}`);
}
