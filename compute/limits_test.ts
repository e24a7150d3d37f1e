import assert from "node:assert/strict";
import { MAX_LORA_SCALE, MAX_LORAS_PER_REQUEST } from "./limits.ts";

// openapi.yaml is checked by the spec generator (scripts/gen_spec.ts), the CLI's defaults are
// written from limits.ts, and the playground by web/limits_test.ts; this is the README's prose.
Deno.test("the README states the LoRA limits of compute/limits.ts", async () => {
  const readme = (await Deno.readTextFile(new URL("../README.md", import.meta.url)))
    .replace(/\s+/g, " ");
  for (
    const words of [
      `\`scale\` (default 1, −${MAX_LORA_SCALE}…${MAX_LORA_SCALE})`,
      `a list of up to ${MAX_LORAS_PER_REQUEST} of them`,
    ]
  ) assert.ok(readme.includes(words), `README.md does not say "${words}"`);
});
