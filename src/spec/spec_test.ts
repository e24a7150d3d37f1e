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

Deno.test("the spec generator translates the bounds it knows and fails, naming the path, on the rest", async () => {
  const { zodModule, UnsupportedSchemaError } = await import("../../scripts/gen_spec.ts");
  const out = zodModule({
    Thing: {
      type: "object",
      properties: {
        id: { type: "string", pattern: "^[a-z]+$", default: "abc" },
        ratio: { type: "number", exclusiveMinimum: 0, multipleOf: 0.5 },
        tags: { type: "array", items: { type: "string" }, maxItems: 3 },
        both: { allOf: [{ type: "object" }, { type: "object" }] },
      },
    },
  });
  for (
    const part of [
      '.regex(new RegExp("^[a-z]+$")).default("abc")',
      ".gt(0).multipleOf(0.5)",
      "z.array(z.string()).max(3)",
      "z.intersection(",
    ]
  ) {
    if (!out.includes(part)) throw new Error(`missing ${part} in\n${out}`);
  }
  let error: Error | undefined;
  try {
    zodModule({
      // As read from YAML: any keyword may appear.
      Bad: JSON.parse('{"type":"object","properties":{"when":{"type":"string","format":"date"}}}'),
    });
  } catch (e) {
    error = e as Error;
  }
  if (
    !(error instanceof UnsupportedSchemaError) ||
    !error.message.includes("#/components/schemas/Bad/properties/when") ||
    !error.message.includes("'format'")
  ) throw new Error(`expected an UnsupportedSchemaError naming the path, got ${error}`);
});

Deno.test("every operation declares the header guard's 400, 408 and 431, and those behind the API key 401", async () => {
  const { parse } = await import("yaml");
  const spec = parse(await Deno.readTextFile(new URL("../../openapi.yaml", import.meta.url)));
  const missing: string[] = [];
  for (const [path, item] of Object.entries(spec.paths as Record<string, object>)) {
    for (
      const [method, operation] of Object.entries(item as Record<string, { responses: object }>)
    ) {
      const statuses = Object.keys(operation.responses);
      // The app puts the key on /v1/* and /metrics (src/app.ts).
      const keyed = path.startsWith("/v1/") || path === "/metrics";
      for (const status of ["400", "408", "431", ...keyed ? ["401"] : []]) {
        if (!statuses.includes(status)) missing.push(`${method.toUpperCase()} ${path} ${status}`);
      }
    }
  }
  assert.deepEqual(missing, []);
});

Deno.test("openapi.yaml states compute's limits; a change on either side is named", async () => {
  const { parse } = await import("yaml");
  const { limitDrift, SPEC_LIMITS } = await import("../../scripts/gen_spec.ts");
  const text = await Deno.readTextFile(new URL("../../openapi.yaml", import.meta.url));
  assert.deepEqual(limitDrift(parse(text)), []);
  const drifted = parse(text);
  drifted.components.schemas.ChatImageParams.properties.lora.oneOf[1].maxItems = 9;
  drifted.components.schemas.LoraRequest.properties.scale.description = "Strength, -5 to 5.";
  assert.deepEqual(limitDrift(drifted), [
    "/components/schemas/ChatImageParams/properties/lora/oneOf/1/maxItems is 9; " +
    "compute/limits.ts says 8",
    '/components/schemas/LoraRequest/properties/scale/description does not say "-10 to 10" ' +
    "(compute/limits.ts)",
  ]);
  const scale = SPEC_LIMITS.find((s) => s.at.endsWith("scale/description"))!;
  assert.deepEqual(limitDrift(parse(text), [{ ...scale, says: "-11 to 11" }]).length, 1);
});
