import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { InvalidInputError, NonFiniteOutputError } from "../compute/mod.ts";
import {
  CancelledError,
  EngineNotReady,
  ModelLoadFailed,
  QueueFull,
  ShuttingDown,
} from "./engine/errors.ts";
import { toApiError } from "./error_handler.ts";
import { ApiError, ENGINE_NOT_READY } from "./errors.ts";

const wire = (err: unknown) => {
  const e = toApiError(err);
  const body = e.body() as { error: { code: string | null; type: string } };
  return {
    status: e.status,
    code: body.error.code,
    type: body.error.type,
    headers: e.options.headers,
  };
};

Deno.test("the engine's errors map to their documented statuses, codes and retry headers", () => {
  assert.deepEqual(wire(new EngineNotReady("downloading")), {
    status: 503,
    code: "engine_not_ready",
    type: "service_unavailable",
    headers: { "retry-after": "5" },
  });
  assert.equal(toApiError(new EngineNotReady()).message, ENGINE_NOT_READY);
  assert.deepEqual(wire(new ModelLoadFailed("no such file")), {
    status: 503,
    code: "model_load_failed",
    type: "service_unavailable",
    headers: { "x-should-retry": "false" },
  });
  assert.equal(toApiError(new ModelLoadFailed("/secret/path")).message, ENGINE_NOT_READY);
  assert.deepEqual(wire(new QueueFull(4)), {
    status: 429,
    code: "queue_full",
    type: "rate_limit_error",
    headers: { "retry-after": "2" },
  });
  assert.match(toApiError(new QueueFull(4)).message, /queue of 4/);
  assert.deepEqual(wire(new ShuttingDown()), {
    status: 503,
    code: "shutting_down",
    type: "service_unavailable",
    headers: { "retry-after": "5" },
  });
  assert.equal(wire(new CancelledError("gone")).status, 499);
});

Deno.test("compute's errors, Hono's and unknown ones map by class", () => {
  const invalid = toApiError(Object.assign(new InvalidInputError("bad steps"), { param: "steps" }));
  assert.equal(invalid.status, 400);
  assert.equal((invalid.body() as { error: { param: string } }).error.param, "steps");
  assert.deepEqual(wire(new NonFiniteOutputError("latents")).headers, {
    "x-should-retry": "false",
  });
  assert.equal(wire(new HTTPException(400)).status, 422);
  assert.equal(wire(new HTTPException(415)).code, "unsupported_media_type");
  const unknown = toApiError(new Error("/home/me/model.onnx exploded"));
  assert.equal(unknown.status, 500);
  assert.doesNotMatch(unknown.message, /home/);
  const api = new ApiError(418, "teapot");
  assert.equal(toApiError(api), api);
});
