/**
 * What the deploy checks (`container:test`, `scaleout:test`) do when a tool they need is not
 * installed: say so and fail, or, with `--skip-missing`, say so and pass, so that a run that
 * proved nothing is never mistaken for one that passed.
 *
 * @module
 */

/** Ends the process: exit 1 naming the missing tool, or exit 0 ("skipped") when `skip` is set. */
export function exitForMissingTool(
  check: string,
  tool: string,
  install: string,
  skip: boolean,
): never {
  const what = `${check}: ${tool} is not installed (${install})`;
  if (skip) {
    console.log(`${what}; skipped (--skip-missing)`);
    Deno.exit(0);
  }
  console.error(`${what}; failed (pass --skip-missing to skip instead)`);
  Deno.exit(1);
}
