/**
 * The shape of `src/`, measured: import cycles (static and dynamic imports between its modules,
 * type-only ones included), the longest functions, and lines of test per line of source.
 * `deno run --allow-read scripts/src_shape.ts [--json]`.
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

const ROOT = new URL("../src/", import.meta.url).pathname;

/** A test file or a helper only tests import. */
export const isTest = (path: string): boolean =>
  /_test\.ts$/.test(path) || /(^|\/)(test_server|testing)\.ts$/.test(path);

/** Every `.ts` file under `dir` (generated ones excluded). */
export function sourceFiles(dir = ROOT): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".gen.ts")) out.push(path);
  }
  return out.sort();
}

function parse(path: string): ts.SourceFile {
  return ts.createSourceFile(path, Deno.readTextFileSync(path), ts.ScriptTarget.Latest, true);
}

/** The modules under `root` that `file` imports (static, re-exports, dynamic `import()`). */
function importsOf(file: ts.SourceFile, root: string): string[] {
  const out: string[] = [];
  const add = (specifier: string) => {
    if (!specifier.startsWith(".")) return;
    const target = resolve(dirname(file.fileName), specifier);
    if (target.startsWith(root)) out.push(target);
  };
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) add(node.moduleSpecifier.text);
    if (
      ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] && ts.isStringLiteral(node.arguments[0])
    ) add(node.arguments[0].text);
    ts.forEachChild(node, visit);
  };
  visit(file);
  return out;
}

/**
 * The import cycles among `files` (under `root`): each strongly connected component of more than
 * one module, named relative to `root`.
 */
export function importCycles(files: string[], root = ROOT): string[][] {
  const graph = new Map(files.map((f) => [f, importsOf(parse(f), root)]));
  // Tarjan's algorithm.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(relative(root, w));
    } while (w !== v);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const f of files) if (!index.has(f)) connect(f);
  return cycles;
}

/** One function's extent. */
export interface FunctionSpan {
  where: string;
  name: string;
  lines: number;
}

/** Every function, method and arrow function in `files`, longest first (first to last line). */
export function functionSpans(files: string[]): FunctionSpan[] {
  const spans: FunctionSpan[] = [];
  for (const path of files) {
    const file = parse(path);
    const visit = (node: ts.Node) => {
      if (ts.isFunctionLike(node) && "body" in node && node.body) {
        const start = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
        const end = file.getLineAndCharacterOfPosition(node.getEnd()).line;
        const named = (node as { name?: ts.Node }).name;
        spans.push({
          where: `${relative(ROOT, path)}:${start + 1}`,
          name: named?.getText(file) ?? "(anonymous)",
          lines: end - start + 1,
        });
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return spans.sort((a, b) => b.lines - a.lines);
}

const lineCount = (files: string[]) =>
  files.reduce((sum, f) => sum + Deno.readTextFileSync(f).split("\n").length - 1, 0);

if (import.meta.main) {
  const files = sourceFiles();
  const source = files.filter((f) => !isTest(f));
  const tests = files.filter(isTest);
  const report = {
    importCycles: importCycles(files),
    longestFunctions: functionSpans(source).slice(0, 8),
    sourceLines: lineCount(source),
    testLines: lineCount(tests),
    testPerSource: Number((lineCount(tests) / lineCount(source)).toFixed(2)),
  };
  if (Deno.args.includes("--json")) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(`import cycles in src/: ${report.importCycles.length}`);
    for (const c of report.importCycles) console.log(`  ${c.join(" ↔ ")}`);
    console.log("longest functions in src/ (lines, first to last):");
    for (const f of report.longestFunctions) console.log(`  ${f.lines}\t${f.name}\t${f.where}`);
    console.log(
      `lines: ${report.sourceLines} source, ${report.testLines} test; ${report.testPerSource} test per source line`,
    );
  }
}
