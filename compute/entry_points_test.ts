import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
/** compute's public entry points (see `compute/mod.ts`). */
const ENTRY_POINTS = new Set(["compute/mod.ts", "compute/image/mod.ts", "compute/convert/mod.ts"]);
/** Folders whose code uses compute only through its entry points. */
const CLIENTS = ["src", "web", "conformance", "deploy", "examples", "scripts"];
/**
 * Scripts that test or measure compute beneath the pipeline (a bare backend session, the
 * tokenizer, the WebGPU test adapter, a graph's shards), as compute's own tests do.
 */
const BENEATH = new Set([
  "scripts/autoencoder_ceiling.ts",
  "scripts/shapes_tiny_test.ts",
  "src/published_layouts_server_test.ts",
  "src/sharded_model_test.ts",
]);

/** The `.ts` and `.js` files under `folder` (relative to the repository), recursively. */
async function* sources(folder: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(new URL(folder, ROOT))) {
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory) yield* sources(path);
    else if (/\.(ts|js)$/.test(entry.name)) yield path;
  }
}

/** Static and dynamic import specifiers of a module's text. */
function specifiers(text: string): string[] {
  return [...text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]);
}

Deno.test("code outside compute/ imports compute only through its entry points", async () => {
  const offending: string[] = [];
  let checked = 0;
  for (const folder of CLIENTS) {
    for await (const file of sources(folder)) {
      if (BENEATH.has(file)) continue;
      const base = new URL(file, ROOT);
      for (const spec of specifiers(await Deno.readTextFile(base))) {
        if (!spec.startsWith(".")) continue;
        const target = new URL(spec, base).pathname.slice(ROOT.pathname.length);
        if (!target.startsWith("compute/")) continue;
        checked++;
        if (!ENTRY_POINTS.has(target)) offending.push(`${file} imports ${target}`);
      }
    }
  }
  assert.ok(checked > 20, `only ${checked} imports of compute/ found: is the scan broken?`);
  assert.deepEqual(offending, []);
});

Deno.test("the scan sees static, type-only, re-exported and dynamic imports", () => {
  assert.deepEqual(
    specifiers(
      'import { a } from "./a.ts";\nimport type {\n  B,\n} from "../b.ts";\n' +
        'export { c } from "./c.ts";\nconst d = await import("./d.ts");\nimport "./e.ts";',
    ),
    ["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts"],
  );
});

/** The modules `entry` loads when imported: its static code imports, transitively. */
async function staticGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    // npm: specifiers, not node_modules paths: resolved from the cache, whatever is installed.
    args: ["info", "--json", "--node-modules-dir=none", new URL(entry, ROOT).pathname],
    stdout: "piped",
  }).output();
  assert.ok(out.success, `deno info ${entry} failed`);
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const modules = new Map<string, { code?: { specifier: string }; isDynamic?: boolean }[]>(
    info.modules.map((m: { specifier: string; dependencies?: [] }) => [
      m.specifier,
      m.dependencies ?? [],
    ]),
  );
  const seen = new Set<string>(info.roots);
  const queue = [...seen];
  while (queue.length) {
    for (const dep of modules.get(queue.pop()!) ?? []) {
      if (!dep.code || dep.isDynamic) continue; // type-only or loaded on first call
      const target = info.redirects[dep.code.specifier] ?? dep.code.specifier;
      if (!seen.has(target)) seen.add(target), queue.push(target);
    }
  }
  return [...seen];
}

Deno.test("compute/mod.ts loads no npm package at import; the encoders load sharp", async () => {
  const npm = (modules: string[]) => modules.filter((s) => s.startsWith("npm:"));
  assert.deepEqual(npm(await staticGraph("compute/mod.ts")), []);
  assert.ok(npm(await staticGraph("compute/image/mod.ts")).some((s) => s.includes("sharp@")));
});
