/**
 * The suites' command lines (`conformance`, `fuzz`, `load`), parsed as `serve` parses its own: a
 * bad flag is one line on stderr, a pointer to `--help`, and exit 2.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/**
 * `Deno.args` parsed against `options`, or a one-line error, `usage` (default: a pointer to
 * `--help`) and exit 2.
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  options: T,
  usage = "Run with --help for the options.",
) {
  try {
    return parseArgs({ args: Deno.args, options }).values;
  } catch (e) {
    console.error(
      `error: ${(e as Error).message.split("\n")[0]}\n${usage}`,
    );
    Deno.exit(2);
  }
}
