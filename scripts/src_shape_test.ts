import assert from "node:assert/strict";
import { importCycles, sourceFiles } from "./src_shape.ts";

Deno.test("src/ has no import cycles (type-only and dynamic imports included)", () => {
  assert.deepEqual(importCycles(sourceFiles()), []);
});

Deno.test("the cycle finder finds a cycle", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/a.ts`, 'import type { B } from "./b.ts";\nexport type A = B;\n');
    Deno.writeTextFileSync(
      `${dir}/b.ts`,
      'export type B = 1;\nexport const a = () => import("./a.ts");\n',
    );
    Deno.writeTextFileSync(`${dir}/c.ts`, 'import "./a.ts";\n');
    assert.deepEqual(importCycles(sourceFiles(`${dir}/`), `${dir}/`), [["a.ts", "b.ts"]]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
