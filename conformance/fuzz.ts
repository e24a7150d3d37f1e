/**
 * `deno task fuzz --base-url URL [--requests 10000] [--concurrency 4] [--seed 1] [--seconds 600]`:
 * requests derived from openapi.yaml with fast-check — valid bodies of the generation endpoints,
 * and mutations of them (missing and mistyped fields, out-of-range numbers, long strings, broken
 * JSON, wrong content types, unknown routes), and malformed framing sent as raw bytes over TCP
 * (`conformance/framing.ts`) — against any server. A violation is a 5xx, an error body outside
 * the documented shape (`detail` plus `error{message,type,param,code}`), an answer without
 * `x-request-id`, a framing case answered otherwise than the contract says, or an undocumented
 * status: one openapi.yaml does not declare for that route (for a path or method it does not
 * list: 404, the guard's 400/408/431, and below `/v1/` the checks every `/v1` route makes). It
 * prints status counts and exits 1 on any violation.
 *
 * Valid bodies keep the work per request small (at most 2 steps, 2 images, 64² pixels) so that
 * ten thousand requests finish in minutes on a CPU; everything else is as the spec allows.
 *
 * @module
 */
import fc from "fast-check";
import { parseFlags } from "./args.ts";
import { FRAMING_CASES, sendRaw } from "./framing.ts";
import { parse } from "yaml";

type Schema = Record<string, unknown>;

/** One request the fuzzer sends. */
export interface FuzzRequest {
  method: string;
  path: string;
  contentType?: string;
  body?: string;
  /** The name of a malformed-framing case (`FRAMING_CASES`): sent raw over TCP. */
  framing?: string;
}

/** What a run found. */
export interface FuzzReport {
  requests: number;
  statuses: Record<number, number>;
  violations: { request: FuzzRequest; status: number; problem: string }[];
  /** Of the violations, answers with a status openapi.yaml does not declare for the route. */
  undocumented: number;
  /** Requests sent as raw malformed framing. */
  framing: number;
  seconds: number;
}

const SPEC = parse(
  await Deno.readTextFile(new URL("../openapi.yaml", import.meta.url)),
) as {
  paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  components: { schemas: Record<string, Schema> };
};
const schemas = SPEC.components.schemas;

/** Each path of the spec as a pattern (`{id}` is one segment), with its methods' statuses. */
const ROUTES = Object.entries(SPEC.paths).map(([path, item]) => ({
  pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`),
  statuses: new Map(
    Object.entries(item).map(([method, op]) => [
      method.toUpperCase(),
      new Set(Object.keys(op.responses).map(Number)),
    ]),
  ),
}));

/**
 * The statuses the contract allows for `method path`: the operation's, or for a path or method
 * openapi.yaml does not list, 404 and the header guard's 400/408/431, and below `/v1/` the
 * statuses of the checks every `/v1` route makes (key, body limits, shutdown).
 */
export function documentedStatuses(method: string, path: string): Set<number> {
  const declared = ROUTES.find((r) => r.pattern.test(path))?.statuses.get(method);
  if (declared) return declared;
  return new Set([400, 404, 408, 431, ...path.startsWith("/v1/") ? [401, 413, 429, 503] : []]);
}

/** Keeps valid requests cheap: these fields get small values instead of the spec's full range. */
const CHEAP: Record<string, fc.Arbitrary<unknown>> = {
  num_inference_steps: fc.integer({ min: 1, max: 2 }),
  n: fc.integer({ min: 1, max: 2 }),
  num_outputs_per_prompt: fc.integer({ min: 1, max: 2 }),
  size: fc.constantFrom("64x64", "32x64", "64x32", "auto", "8x8", "16x48"),
  width: fc.constantFrom(32, 64),
  height: fc.constantFrom(32, 64),
  partial_images: fc.integer({ min: 0, max: 3 }),
  prompt: fc.string({ minLength: 1, maxLength: 60 }),
  negative_prompt: fc.option(fc.string({ maxLength: 60 })),
  model: fc.constant(undefined),
  response_format: fc.constantFrom("b64_json", "url", undefined),
  // Mostly absent (a request with an adapter the server cannot read is a 400, not an image);
  // otherwise a spec-shaped object, resolved lazily (this table is built before `arbitrary`).
  lora: fc.option(fc.constant(null).chain(() => arbitrary(schemas.LoraRequest)), {
    nil: undefined,
    freq: 6,
  }),
};

/** A fast-check arbitrary of values valid for `schema` (the subset of JSON Schema our spec uses). */
export function arbitrary(schema: Schema, name = ""): fc.Arbitrary<unknown> {
  if (name in CHEAP) return CHEAP[name];
  if (typeof schema.$ref === "string") {
    return arbitrary(schemas[schema.$ref.split("/").at(-1)!]);
  }
  const alternatives = (schema.oneOf ?? schema.anyOf) as Schema[] | undefined;
  if (alternatives) return fc.oneof(...alternatives.map((a) => arbitrary(a)));
  if ("const" in schema) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum);
  const types = [schema.type].flat().filter(Boolean) as string[];
  return fc.oneof(...(types.length ? types : ["null"]).map((type) => {
    switch (type) {
      case "null":
        return fc.constant(null);
      case "boolean":
        return fc.boolean();
      case "integer":
        return fc.integer({
          min: Number(schema.minimum ?? -1e6),
          max: Math.min(Number(schema.maximum ?? 1e6), 2 ** 31 - 1),
        });
      case "number":
        return fc.double({
          min: Number(schema.minimum ?? -1e6),
          max: Number(schema.maximum ?? 1e6),
          noNaN: true,
        });
      case "string":
        return fc.string({
          minLength: Number(schema.minLength ?? 0),
          maxLength: Math.min(Number(schema.maxLength ?? 40), 40),
        });
      case "array":
        return fc.array(arbitrary(schema.items as Schema), {
          minLength: Number(schema.minItems ?? 0),
          maxLength: 3,
        });
      default: {
        const properties = (schema.properties ?? {}) as Record<string, Schema>;
        const required = new Set((schema.required ?? []) as string[]);
        return fc.record(
          Object.fromEntries(
            Object.entries(properties).map(([k, v]) => [k, arbitrary(v, k)]),
          ),
          { requiredKeys: [...required] },
        );
      }
    }
  }));
}

/** Any JSON value, for putting where it does not belong. */
const junk = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.constant(-1),
  fc.constant(1e308),
  fc.constant("x".repeat(40_000)),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);

const chatBody = fc.record({
  messages: fc.array(
    fc.record({
      role: fc.constantFrom("user", "system", "assistant"),
      content: fc.oneof(
        fc.string({ minLength: 1, maxLength: 60 }),
        fc.array(fc.record({ type: fc.constant("text"), text: fc.string({ maxLength: 30 }) }), {
          maxLength: 2,
        }),
      ),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  extra_body: fc.option(arbitrary(schemas.ChatImageParams)),
  stream: fc.option(fc.boolean()),
});

/** A valid body, then maybe mutated: a field dropped, replaced by junk, or the text broken. */
function mutated(body: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  return fc.tuple(body, fc.nat(), junk, fc.nat({ max: 9 })).map(([value, pick, bad, how]) => {
    const object = value as Record<string, unknown>;
    const keys = Object.keys(object);
    const key = keys[pick % Math.max(keys.length, 1)];
    switch (how) {
      case 0:
        if (key) delete object[key];
        return JSON.stringify(object);
      case 1:
      case 2:
        if (key) object[key] = bad;
        return JSON.stringify(object);
      case 3:
        return JSON.stringify(object).slice(0, pick % 40);
      case 4:
        return JSON.stringify(bad);
      case 5:
        object[`unknown_${pick % 3}`] = bad;
        return JSON.stringify(object);
      default:
        return JSON.stringify(object);
    }
  });
}

const requestArbitrary: fc.Arbitrary<FuzzRequest> = fc.oneof(
  {
    weight: 5,
    arbitrary: mutated(arbitrary(schemas.ImageGenerationRequest)).map((body) => ({
      method: "POST",
      path: "/v1/images/generations",
      contentType: "application/json",
      body,
    })),
  },
  {
    weight: 3,
    arbitrary: mutated(chatBody).map((body) => ({
      method: "POST",
      path: "/v1/chat/completions",
      contentType: "application/json",
      body,
    })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom("/v1/images/generations", "/v1/chat/completions"),
      fc.constantFrom(
        undefined,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
      ),
      fc.string({ maxLength: 30 }),
    ).map(([path, contentType, body]) => ({ method: "POST", path, contentType, body })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom(...FRAMING_CASES.map((c) => c.name)),
      fc.constantFrom(
        ["POST", "/v1/images/generations"],
        ["POST", "/v1/chat/completions"],
        ["GET", "/v1/models"],
        ["GET", "/v1/images/files/nope"],
        ["GET", "/health"],
        ["GET", "/metrics"],
        ["GET", "/v1/nothing"],
      ),
    ).map(([framing, [method, path]]) => ({ method, path, framing })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom("GET", "POST", "PUT", "DELETE"),
      fc.constantFrom(
        "/v1/models",
        "/v1/images/files/nope",
        "/v1/images/files/../../etc/passwd",
        "/v1/nothing",
        "/health",
        "/v2",
        "/v1/images/generations",
      ),
    ).map(([method, path]) => ({ method, path })),
  },
);

/** Checks one answer to `request` against the contract; returns what is wrong, if anything. */
async function check(request: FuzzRequest, res: Response): Promise<string | undefined> {
  const type = res.headers.get("content-type") ?? "";
  const path = new URL(request.path, "http://x").pathname;
  if (!documentedStatuses(request.method, path).has(res.status)) {
    await res.body?.cancel();
    return `undocumented status ${res.status} for ${request.method} ${path}`;
  }
  const framing = FRAMING_CASES.find((c) => c.name === request.framing);
  if (framing && res.status !== framing.status) {
    await res.body?.cancel();
    return `framing '${framing.name}' answered ${res.status}, not ${framing.status}`;
  }
  if (!res.headers.get("x-request-id")) {
    await res.body?.cancel();
    return `a ${res.status} without x-request-id`;
  }
  if (res.status >= 500 && res.status !== 503) {
    await res.body?.cancel();
    return `status ${res.status}`;
  }
  if (res.status < 400) {
    await res.body?.cancel();
    return undefined;
  }
  if (!type.includes("application/json")) {
    await res.body?.cancel();
    return `a ${res.status} with content-type '${type}'`;
  }
  const body = await res.json().catch(() => undefined);
  const error = body?.error;
  if (
    !body || !("detail" in body) || typeof error?.message !== "string" ||
    typeof error?.type !== "string" || !("param" in error) || !("code" in error)
  ) {
    return `a ${res.status} body outside the documented shape: ${
      JSON.stringify(body)?.slice(0, 200)
    }`;
  }
  return undefined;
}

/** Sends `requests` fuzzed requests to `baseUrl`, `concurrency` at a time. */
export async function fuzz(
  baseUrl: string,
  options: { requests: number; concurrency?: number; seed?: number; seconds?: number },
): Promise<FuzzReport> {
  const samples = fc.sample(requestArbitrary, {
    numRuns: options.requests,
    seed: options.seed ?? 1,
  });
  const report: FuzzReport = {
    requests: 0,
    statuses: {},
    violations: [],
    undocumented: 0,
    framing: 0,
    seconds: 0,
  };
  const host = new URL(baseUrl).host;
  const started = performance.now();
  const deadline = started + (options.seconds ?? 600) * 1000;
  let next = 0;
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, async () => {
    while (next < samples.length && performance.now() < deadline) {
      const request = samples[next++];
      let problem: string | undefined;
      let status = 0;
      try {
        const framing = FRAMING_CASES.find((c) => c.name === request.framing);
        const res = framing
          ? await sendRaw(baseUrl, framing.build({ ...request, host }), 60_000)
          : await fetch(`${baseUrl}${request.path}`, {
            method: request.method,
            headers: request.contentType ? { "content-type": request.contentType } : {},
            body: request.body,
            signal: AbortSignal.timeout(60_000),
          });
        status = res.status;
        problem = await check(request, res);
      } catch (e) {
        problem = `no answer: ${(e as Error).message}`;
      }
      report.requests++;
      if (request.framing) report.framing++;
      report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      if (problem?.startsWith("undocumented")) report.undocumented++;
      if (problem) report.violations.push({ request, status, problem });
    }
  }));
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

if (import.meta.main) {
  const values = parseFlags(
    {
      "base-url": { type: "string", default: "http://127.0.0.1:8000" },
      requests: { type: "string", default: "10000" },
      concurrency: { type: "string", default: "4" },
      seed: { type: "string", default: "1" },
      seconds: { type: "string", default: "600" },
    },
    "Usage: deno task fuzz --base-url URL [--requests N] [--concurrency N] [--seed N] [--seconds S]",
  );
  const report = await fuzz(values["base-url"].replace(/\/+$/, ""), {
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    seed: Number(values.seed),
    seconds: Number(values.seconds),
  });
  console.log(
    `fuzz: ${report.requests} requests in ${report.seconds.toFixed(1)} s against ${
      values["base-url"]
    } (seed ${values.seed})`,
  );
  console.log(
    `statuses: ${Object.entries(report.statuses).map(([s, n]) => `${s}×${n}`).join(", ")}`,
  );
  console.log(`raw malformed framing: ${report.framing} of them`);
  console.log(`undocumented statuses: ${report.undocumented}`);
  console.log(`violations: ${report.violations.length}`);
  for (const v of report.violations.slice(0, 10)) {
    console.log(
      `  ${v.problem}\n    ${v.request.method} ${v.request.path} ${
        v.request.framing ?? v.request.body?.slice(0, 200) ?? ""
      }`,
    );
  }
  Deno.exit(report.violations.length ? 1 : 0);
}
