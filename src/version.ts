/**
 * The server's version (also `info.version` in openapi.yaml; a test keeps them equal).
 *
 * @module
 */
export const VERSION = "0.2.0";
