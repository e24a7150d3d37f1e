/**
 * `deno task serve [MODEL] [options]` (see `--help`, or the flag table in `src/cli.ts`): reads
 * the command line into a frozen configuration, then starts the server (`startup.ts`: model,
 * engine, HTTP), which serves until SIGINT or SIGTERM and then drains (`lifecycle.ts`): finishes
 * what it accepted, answers new requests 503, exits 0.
 *
 * @module
 */
import { CliError, helpText, parseCli, type ServerConfig } from "./cli.ts";
import { createLogger } from "./log.ts";
import { startServer } from "./startup.ts";
import { VERSION } from "./version.ts";

/** The configuration `args` give; `--help`, `--version` and a bad flag exit here. */
function configFrom(args: readonly string[]): ServerConfig {
  let config: ServerConfig;
  try {
    config = parseCli(args);
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    console.error(`error: ${e.message}\nRun with --help for the options.`);
    Deno.exit(2);
  }
  if (config.help) {
    console.log(helpText());
    Deno.exit(0);
  }
  if (config.version) {
    console.log(`denoise ${VERSION}`);
    Deno.exit(0);
  }
  return config;
}

/** Runs the server with command-line `args`; resolves once it listens. */
export async function main(args: readonly string[]): Promise<void> {
  const config = configFrom(args);
  await startServer(config, createLogger(config.logLevel, config.logFormat));
}

if (import.meta.main) await main(Deno.args);
