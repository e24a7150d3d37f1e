/**
 * A session that can be closed between uses and opens again on its next run
 * (`--enable-cpu-offload`: the text encoders and the denoiser take turns in memory).
 *
 * @module
 */
import type { Session } from "../backends/backend.ts";

/** A {@linkcode Session} with {@linkcode OnDemandSession.park}. */
export interface OnDemandSession extends Session {
  /** Closes the session if no run is in flight; the next run opens it again. */
  park(): Promise<void>;
  /** How many times it was opened again after a park. */
  readonly reopens: number;
}

/** What {@linkcode onDemandSession} does around its runs. */
export interface OnDemandHooks {
  /** Before every run (closing the other group of sessions). */
  beforeRun?: () => Promise<void>;
  /** After a park has closed the session (giving its memory back to the system). */
  afterPark?: () => void;
  /** When the session is released for good. */
  onRelease?: () => void;
}

/**
 * `first` (already open) as an {@linkcode OnDemandSession} that `open` reopens. A run and a park
 * never overlap: a park while a run is in flight leaves the session open.
 */
export function onDemandSession(
  first: Session,
  open: () => Promise<Session>,
  hooks: OnDemandHooks = {},
): OnDemandSession {
  let current: Promise<Session> | undefined = Promise.resolve(first);
  let inFlight = 0;
  let reopens = 0;
  return {
    inputs: first.inputs,
    outputs: first.outputs,
    get reopens() {
      return reopens;
    },
    async run(feeds) {
      inFlight++;
      try {
        await hooks.beforeRun?.();
        if (!current) {
          reopens++;
          current = open();
          // A failed open is retried by the next run, not remembered.
          current.catch(() => current = undefined);
        }
        return await (await current).run(feeds);
      } finally {
        inFlight--;
      }
    },
    async park() {
      if (inFlight > 0 || !current) return;
      const session = current;
      current = undefined;
      await (await session).release();
      hooks.afterPark?.();
    },
    async release() {
      hooks.onRelease?.();
      const session = current;
      current = undefined;
      await (await session)?.release();
    },
  };
}
