/**
 * Writes the README's flag table from the CLI's own table (`src/cli.ts`), between the markers
 * `<!-- flags:start -->` and `<!-- flags:end -->`. Run by `deno task gen`; `src/cli_test.ts`
 * fails when the README drifts.
 *
 * @module
 */
import { flagTable } from "../src/cli.ts";

const README = new URL("../README.md", import.meta.url);
const START = "<!-- flags:start -->", END = "<!-- flags:end -->";

/** The README with its flag table replaced by the current one. */
export function withFlagTable(readme: string): string {
  const a = readme.indexOf(START), b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md lacks ${START} … ${END}`);
  return `${readme.slice(0, a + START.length)}\n\n${flagTable()}\n\n${readme.slice(b)}`;
}

if (import.meta.main) {
  const text = await Deno.readTextFile(README);
  await Deno.writeTextFile(README, withFlagTable(text));
  console.log("wrote the flag table in README.md");
}
