/**
 * The Hono environment shared by the app, its middleware and its routes.
 *
 * @module
 */
import type { Generated } from "./serving/generation.ts";

/** Per-request values set by middleware and handlers. */
export type AppEnv = {
  Variables: {
    requestId: string;
    /** What a generation made, for the access log. */
    generated?: Generated;
    /** A streamed response: settles with the status its stream ended with. */
    streamEnded?: Promise<number>;
  };
};
