import assert from "node:assert/strict";
import { generate } from "../../scripts/gen_spec.ts";

Deno.test("src/spec is what openapi.yaml generates (run `deno task gen` after editing the spec)", async () => {
  for (const [name, contents] of Object.entries(await generate())) {
    const committed = await Deno.readTextFile(new URL(name, import.meta.url));
    assert.ok(
      committed === contents,
      `src/spec/${name} drifted from openapi.yaml; run deno task gen`,
    );
  }
});
