/**
 * `requestLog()`: gives every request an id (the client's `x-request-id`, or a new one), echoes
 * it, and logs one line per request with its status, time and generation stages. A streamed
 * response is logged when its stream ends, with the status it ended with (499 when the client
 * left).
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app_env.ts";
import type { Generated } from "../serving/generation.ts";

function stages(g: Generated | undefined): string {
  const t = g?.result.timings;
  if (!g || !t) return "";
  return ` images=${g.images.length} size=${g.result.width}x${g.result.height} steps=${g.result.steps} seed=${g.result.seed} text=${
    t.textEncodeMs.toFixed(0)
  }ms denoise=${t.stepMs.reduce((a, b) => a + b, 0).toFixed(0)}ms decode=${
    t.decodeMs.toFixed(0)
  }ms encode=${(t.encodeMs ?? 0).toFixed(0)}ms`;
}

/** The request id and access log middleware. */
export function requestLog(
  log: (line: string) => void,
  onFinished: (method: string, route: string, status: number, generated?: Generated) => void,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    const id = c.req.header("x-request-id") ?? crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.header("x-request-id", id);
    const line = (status: number) => {
      onFinished(c.req.method, c.req.routePath, status, c.get("generated"));
      log(
        `${c.req.method} ${c.req.path} ${status} ${
          (performance.now() - started).toFixed(0)
        }ms id=${id}${stages(c.get("generated"))}`,
      );
    };
    const stream = c.get("streamEnded");
    if (stream) void stream.then(line);
    else line(c.res.status);
  };
}
