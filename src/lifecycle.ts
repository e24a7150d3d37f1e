/**
 * The server's end: SIGINT and SIGTERM start a graceful drain (stop admitting, let accepted
 * requests finish within `--shutdown-timeout`, answer the rest 503, close, exit 0), and a fatal
 * start-up error exits 1 once the engine may safely be left. Owns `draining` and the shutdown
 * signal that stops a download; reads the engine and the listening server.
 *
 * @module
 */
import type { Engine } from "./engine/engine.ts";
import { ShuttingDown } from "./engine/errors.ts";
import type { GuardedServer } from "./header_guard.ts";
import type { Logger } from "./log.ts";

/** How the server ends. */
export class Lifecycle {
  #draining = false;
  #engine?: Engine;
  #server?: GuardedServer;
  readonly #shutdown = new AbortController();

  constructor(readonly log: Logger, readonly shutdownTimeoutS: number) {}

  /** A drain began: new requests get 503 with `retry-after`. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Aborts when a drain begins (a download in progress stops). */
  get shutdownSignal(): AbortSignal {
    return this.#shutdown.signal;
  }

  /**
   * Listens for SIGINT and SIGTERM from now on, draining `engine` (the model may be ready before
   * the server listens, so this starts with the engine, before {@linkcode serving}).
   */
  watch(engine: Engine): void {
    this.#engine = engine;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => void this.drain(signal));
    }
  }

  /** The server whose open responses a drain lets finish. */
  serving(server: GuardedServer): void {
    this.#server = server;
  }

  /** Logs `message` and exits 1, once the engine may be left (see `Engine.close`). */
  async fatal(message: string): Promise<never> {
    this.log.error(message);
    await this.#engine?.close();
    Deno.exit(1);
  }

  /** Graceful shutdown (see the module's description). */
  async drain(signal: string): Promise<void> {
    const engine = this.#engine;
    if (this.#draining || !engine) return;
    this.#draining = true;
    this.#shutdown.abort();
    this.log.info(`${signal}: draining ${engine.running + engine.waiting} request(s)`, {
      timeout_s: this.shutdownTimeoutS,
    });
    if (await this.#timedOut(engine.idle())) {
      this.log.warning(
        `shutdown timeout: answering ${engine.running + engine.waiting} request(s) 503`,
      );
      engine.abortAll(new ShuttingDown());
    }
    // Responses already being written (streams, encodes) finish; no new connections are taken.
    if (this.#server) {
      await Promise.race([this.#server.shutdown(), new Promise((r) => setTimeout(r, 5000))]);
    }
    const state = engine.state;
    if (state.status === "loading" && !state.stage?.startsWith("downloading")) {
      this.log.info("waiting for the model load to finish before exiting");
    }
    await engine.close();
    Deno.exit(0);
  }

  /** Whether the grace period passed before `idle` settled. */
  async #timedOut(idle: Promise<void>): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.shutdownTimeoutS * 1000);
      }),
    ]);
    clearTimeout(timer);
    return timedOut;
  }
}
