/**
 * What the engine refuses or gives up on, by class and without HTTP: `src/error_handler.ts` is
 * the one place these become statuses, bodies and retry headers. A cancelled generation is
 * compute's `CancelledError`, re-exported here so callers of the engine need only this module.
 *
 * @module
 */
export { CancelledError } from "../../compute/mod.ts";

/** No model to run yet: it is still downloading or loading (retrying later helps). */
export class EngineNotReady extends Error {
  constructor(readonly stage?: string) {
    super(`the model is still loading${stage ? ` (${stage})` : ""}`);
    this.name = "EngineNotReady";
  }
}

/** The model failed to load; it stays so until the server restarts (retrying does not help). */
export class ModelLoadFailed extends Error {
  constructor(readonly reason: string) {
    super(`loading failed: ${reason}`);
    this.name = "ModelLoadFailed";
  }
}

/** The queue of requests waiting to start is full. */
export class QueueFull extends Error {
  constructor(readonly maxQueue: number) {
    super(`Too many requests waiting (queue of ${maxQueue}); retry shortly.`);
    this.name = "QueueFull";
  }
}

/** The server shut down before this request finished (the drain's grace period ran out). */
export class ShuttingDown extends Error {
  constructor() {
    super("The server shut down before this request finished; retry.");
    this.name = "ShuttingDown";
  }
}
