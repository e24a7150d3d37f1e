/**
 * `GET /openapi.json` (openapi.yaml, parsed) and `GET /docs`: Swagger UI from the
 * `swagger-ui-dist` npm package (pinned by deno.lock), served by us, so the page works with no
 * network beyond this server. The document's `servers` entry is `/`, which Swagger UI resolves
 * against the page's own origin, so "Try it out" reaches this server on any host and port.
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
// Only the package's folder is needed: its main module also evaluates the 1.5 MB Swagger UI
// bundle, which cost ~180 ms of the server's start.
import getAbsoluteFSPath from "swagger-ui-dist/absolute-path.js";
import { parse } from "yaml";
import type { AppEnv } from "../app_env.ts";

const SPEC_URL = new URL("../../openapi.yaml", import.meta.url);
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>denoise API</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/docs/assets/init.js"></script>
  </body>
</html>
`;
const INIT =
  `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });\n`;

/** Adds the API description routes. */
export function docsRoutes(app: OpenAPIHono<AppEnv>): void {
  const spec = parse(Deno.readTextFileSync(SPEC_URL));
  const dir = getAbsoluteFSPath();
  const assets = new Map(
    Object.entries(ASSETS).map(([name, type]) => [name, {
      type,
      bytes: Deno.readFileSync(`${dir}/${name}`),
    }]),
  );
  app.get("/openapi.json", (c) => c.json(spec));
  app.get("/docs", (c) => c.html(PAGE));
  app.get(
    "/docs/assets/init.js",
    (c) => c.body(INIT, 200, { "content-type": "text/javascript; charset=utf-8" }),
  );
  app.get("/docs/assets/:name", (c) => {
    const asset = assets.get(c.req.param("name"));
    if (!asset) return c.notFound();
    return c.body(asset.bytes.slice().buffer, 200, {
      "content-type": asset.type,
      "cache-control": "public, max-age=86400",
    });
  });
}
