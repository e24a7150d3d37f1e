/**
 * `GET /openapi.json` (openapi.yaml, parsed) and `GET /docs` (Swagger UI).
 *
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { swaggerUI } from "@hono/swagger-ui";
import { parse } from "yaml";
import type { AppEnv } from "../app_env.ts";

const SPEC_URL = new URL("../../openapi.yaml", import.meta.url);

/** Adds the API description routes. */
export function docsRoutes(app: OpenAPIHono<AppEnv>): void {
  const spec = parse(Deno.readTextFileSync(SPEC_URL));
  app.get("/openapi.json", (c) => c.json(spec));
  app.get("/docs", swaggerUI({ url: "/openapi.json", title: "denoise API" }));
}
