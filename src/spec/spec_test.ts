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

Deno.test("openapi.yaml info.version is the server's VERSION", async () => {
  const { parse } = await import("yaml");
  const { VERSION } = await import("../version.ts");
  const spec = parse(await Deno.readTextFile(new URL("../../openapi.yaml", import.meta.url)));
  if (spec.info.version !== VERSION) {
    throw new Error(`openapi.yaml says ${spec.info.version}, src/version.ts ${VERSION}`);
  }
});
