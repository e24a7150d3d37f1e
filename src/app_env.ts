/**
 * The Hono environment shared by the app, its middleware and its routes.
 *
 * @module
 */
import type { Outcome } from "./api/outcome.ts";

/** Per-request values set by middleware. */
export type AppEnv = {
  Variables: {
    requestId: string;
    /** How the request ended, for the access log (set by the request log). */
    outcome: Outcome;
  };
};
