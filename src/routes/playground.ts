/**
 * `GET /`: the playground page (web/), served from memory. Plain HTML, CSS and three script
 * modules; no framework and nothing fetched from elsewhere.
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../app_env.ts";

const WEB = new URL("../../web/", import.meta.url);
const FILES: Record<string, [file: string, type: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/playground/playground.js": ["playground.js", "text/javascript; charset=utf-8"],
  "/playground/store.js": ["store.js", "text/javascript; charset=utf-8"],
  "/playground/edit.js": ["edit.js", "text/javascript; charset=utf-8"],
  "/playground/playground.css": ["playground.css", "text/css; charset=utf-8"],
};

/** Adds the playground routes. */
export function playgroundRoutes(app: OpenAPIHono<AppEnv>): void {
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = Deno.readTextFileSync(new URL(file, WEB));
    app.get(path, (c) => c.body(body, 200, { "content-type": type, "cache-control": "no-cache" }));
  }
}
