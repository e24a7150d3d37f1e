/**
 * Runs conformance cases against any server: documented shell examples with real `curl`, `jq`
 * and `base64`, Python examples with `python3`, the npm `openai` client, and plain HTTP.
 *
 * @module
 */
import OpenAI, { toFile } from "openai";
import sharp from "sharp";
import {
  type Case,
  EDIT_FILES,
  type Expectation,
  LORA_PLACEHOLDER,
  MODEL_PLACEHOLDER,
} from "./cases.ts";

/** Outcome of one case. */
export interface CaseResult {
  id: string;
  source: string;
  expected: string;
  got: string;
  status: "pass" | "fail" | "skip";
}

/** Where and how to run. */
export interface RunContext {
  baseUrl: string;
  /** Model name substituted for the documented one; the target's first model when absent. */
  model: string;
  /** The operator says the target has no ready engine: only the 503 case runs. */
  expectUnready: boolean;
  /** A Python interpreter with `requests` and `PIL`, if any. */
  python?: string;
  /** Whether `curl`, `jq` and `base64` are on PATH. */
  shell: boolean;
  /** A PEFT LoRA adapter folder readable by the server, for the LoRA example. */
  loraPath?: string;
  /** False when the target says its model cannot edit (`max_edit_images: 0` in /v1/models). */
  canEdit: boolean;
}

class Mismatch extends Error {}

const describe = (e: Expectation): string => {
  const size = "width" in e && e.width ? ` ${e.width}x${e.height}` : "";
  switch (e.kind) {
    case "png":
      return `${e.file}: PNG${size}`;
    case "images":
      return `200, ${e.count} image(s)${size}${e.distinct ? ", distinct" : ""}`;
    case "chat-images":
      return `200, chat with ${e.count} image(s)${size}`;
    case "error":
      return `${e.status}, detail string${e.detail ? ` ${e.detail}` : ""}`;
    case "validation":
      return `422, detail[{loc:${JSON.stringify(e.loc)},msg,type}]`;
    case "reproducible":
      return "same seed → same bytes; other seed → other bytes";
  }
};

async function imageInfo(
  bytes: Uint8Array,
): Promise<{ format: string; width: number; height: number }> {
  try {
    const img = sharp(bytes);
    const meta = await img.metadata();
    await img.raw().toBuffer(); // decodes fully: truncated files fail here
    return { format: meta.format ?? "?", width: meta.width ?? 0, height: meta.height ?? 0 };
  } catch (e) {
    throw new Mismatch(`not a decodable image (${(e as Error).message})`);
  }
}

async function checkImages(
  list: Uint8Array[],
  e: { count: number; width?: number; height?: number; distinct?: boolean },
) {
  const infos = await Promise.all(list.map(imageInfo));
  const sizes = [...new Set(infos.map((i) => `${i.width}x${i.height}`))].join(",");
  const got = `${list.length} image(s) ${sizes}`;
  if (list.length !== e.count) throw new Mismatch(got);
  if (e.width && infos.some((i) => i.width !== e.width || i.height !== e.height)) {
    throw new Mismatch(got);
  }
  if (e.distinct && new Set(list.map((b) => b.toBase64())).size !== list.length) {
    throw new Mismatch(`${got}, not distinct`);
  }
  return got;
}

function imagesFromResponse(json: unknown): Uint8Array[] {
  const data = (json as { data?: { b64_json?: string }[] })?.data;
  if (!Array.isArray(data)) {
    throw new Mismatch(`no data[] in ${JSON.stringify(json).slice(0, 120)}`);
  }
  return data.map((d) => Uint8Array.fromBase64(d.b64_json ?? ""));
}

function imagesFromChat(json: unknown): Uint8Array[] {
  const content = (json as { choices?: { message?: { content?: unknown } }[] })?.choices?.[0]
    ?.message?.content;
  if (!Array.isArray(content)) {
    throw new Mismatch(`no choices[0].message.content[] in ${JSON.stringify(json).slice(0, 120)}`);
  }
  return content.map((part: { image_url?: { url?: string } }) => {
    const url = part?.image_url?.url ?? "";
    if (!url.startsWith("data:image/")) throw new Mismatch(`content part is not an image data URL`);
    return Uint8Array.fromBase64(url.slice(url.indexOf(",") + 1));
  });
}

function substituteHost(script: string, baseUrl: string): string {
  return script.replaceAll(/http:\/\/localhost:(8000|8091)/g, baseUrl);
}

async function runProcess(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** The bytes of one of the edit cases' files. */
const editFile = (name: string) => Uint8Array.fromBase64(EDIT_FILES[name]);

/** A multipart body of text `fields` and `files` ([field, name of an edit file]). */
function form(fields: Record<string, string>, files: [string, string][]): FormData {
  const body = new FormData();
  for (const [field, name] of files) {
    body.append(field, new Blob([editFile(name)], { type: "image/png" }), name);
  }
  for (const [k, v] of Object.entries(fields)) body.append(k, v);
  return body;
}

async function post(
  baseUrl: string,
  path: string,
  body: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    ...(body instanceof FormData
      ? { body }
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  try {
    return { status: res.status, json: JSON.parse(text) };
  } catch {
    return { status: res.status, json: text };
  }
}

function parseJson(stdout: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch {
    throw new Mismatch(`output is not JSON: ${stdout.slice(0, 100)}`);
  }
}

/** Judges an HTTP answer against an error/validation expectation. */
function checkError(
  status: number,
  json: unknown,
  e: Extract<Expectation, { kind: "error" | "validation" }>,
): string {
  const detail = (json as { detail?: unknown })?.detail;
  const got = `${status} detail=${JSON.stringify(detail)?.slice(0, 160)}`;
  if (status !== e.status) throw new Mismatch(got);
  if (e.kind === "error") {
    if (typeof detail !== "string") throw new Mismatch(got);
    if (typeof e.detail === "string" && detail !== e.detail) throw new Mismatch(got);
    if (e.detail instanceof RegExp && !e.detail.test(detail)) throw new Mismatch(got);
    return got;
  }
  const items = Array.isArray(detail) ? detail : [];
  const ok = items.some((i) =>
    JSON.stringify(i?.loc) === JSON.stringify(e.loc) && typeof i?.msg === "string" &&
    typeof i?.type === "string"
  );
  if (!ok) throw new Mismatch(got);
  return got;
}

async function execute(c: Case, ctx: RunContext, dir: string): Promise<string> {
  const a = c.action, e = c.expect;
  switch (a.kind) {
    case "shell":
    case "python": {
      const script = substituteHost(a.script, ctx.baseUrl).replaceAll(
        LORA_PLACEHOLDER,
        ctx.loraPath ?? LORA_PLACEHOLDER,
      );
      const run = a.kind === "shell"
        ? await runProcess("bash", ["-c", script], dir)
        : (await Deno.writeTextFile(`${dir}/example.py`, script),
          await runProcess(ctx.python!, ["example.py"], dir));
      if (run.code !== 0) throw new Mismatch(`exit ${run.code}: ${run.stderr.trim().slice(-160)}`);
      if (e.kind === "png") {
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(`${dir}/${e.file}`);
        } catch {
          throw new Mismatch(`${e.file} not written`);
        }
        const info = await imageInfo(bytes);
        const got = `${e.file}: ${info.format} ${info.width}x${info.height}`;
        if (
          info.format !== "png" || (e.width && (info.width !== e.width || info.height !== e.height))
        ) {
          throw new Mismatch(got);
        }
        return got;
      }
      if (e.kind === "images") {
        return await checkImages(imagesFromResponse(parseJson(run.stdout)), e);
      }
      throw new TypeError(`case ${c.id}: unsupported expectation for ${a.kind}`);
    }
    case "http":
    case "multipart": {
      const body = a.kind === "http" ? a.body : form(a.fields, a.files);
      const { status, json } = await post(ctx.baseUrl, a.path, body);
      if (e.kind === "error" || e.kind === "validation") return checkError(status, json, e);
      if (status !== 200) throw new Mismatch(`${status} ${JSON.stringify(json).slice(0, 160)}`);
      if (e.kind === "images") return `200, ${await checkImages(imagesFromResponse(json), e)}`;
      if (e.kind === "chat-images") return `200, ${await checkImages(imagesFromChat(json), e)}`;
      throw new TypeError(`case ${c.id}: unsupported expectation for http`);
    }
    case "seeds": {
      const one = async (seed: number) => {
        const { status, json } = await post(ctx.baseUrl, "/v1/images/generations", {
          ...a.body,
          seed,
        });
        if (status !== 200) throw new Mismatch(`${status} for seed ${seed}`);
        return imagesFromResponse(json)[0].toBase64();
      };
      const [a1, a2, b] = [await one(42), await one(42), await one(43)];
      if (a1 !== a2) throw new Mismatch("seed 42 twice gave different images");
      if (a1 === b) throw new Mismatch("seeds 42 and 43 gave the same image");
      return "identical for 42/42, different for 42/43";
    }
    case "openai-images":
    case "openai-chat":
    case "openai-edit": {
      const client = new OpenAI({ baseURL: `${ctx.baseUrl}/v1`, apiKey: "none", maxRetries: 0 });
      const params = {
        ...a.params,
        model: a.params.model === MODEL_PLACEHOLDER ? ctx.model : a.params.model,
      };
      try {
        if (a.kind === "openai-edit") {
          const files = Object.fromEntries(
            await Promise.all(
              Object.entries(a.files).map(async ([param, name]) =>
                [param, await toFile(editFile(name), name, { type: "image/png" })] as const
              ),
            ),
          );
          const res = await client.images.edit(
            { ...params, ...files } as unknown as OpenAI.ImageEditParamsNonStreaming,
          );
          return await checkImages(imagesFromResponse(res), e as { count: number });
        }
        if (a.kind === "openai-images") {
          const res = await client.images.generate(
            params as unknown as OpenAI.ImageGenerateParamsNonStreaming,
          );
          return await checkImages(imagesFromResponse(res), e as { count: number });
        }
        const res = await client.chat.completions.create(
          params as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
        );
        return await checkImages(imagesFromChat(res), e as { count: number });
      } catch (err) {
        if (err instanceof Mismatch) throw err;
        throw new Mismatch(`openai client threw ${(err as Error).message.slice(0, 160)}`);
      }
    }
  }
}

/** Runs one case; never throws. */
export async function runCase(c: Case, ctx: RunContext): Promise<CaseResult> {
  const base = { id: c.id, source: c.source, expected: describe(c.expect) };
  if (ctx.expectUnready !== (c.unreadyOnly ?? false)) {
    const got = ctx.expectUnready
      ? "skipped: target declared unready"
      : "skipped: needs --expect-unready";
    return { ...base, got, status: "skip" };
  }
  if (c.needsLora && !ctx.loraPath) {
    return {
      ...base,
      got: "skipped: needs --lora-path (an adapter folder on the server)",
      status: "skip",
    };
  }
  if (c.needsEdit && !ctx.canEdit) {
    return { ...base, got: "skipped: the target's model cannot edit", status: "skip" };
  }
  if (c.action.kind === "python" && !ctx.python) {
    return { ...base, got: "skipped: python3 with requests and PIL not found", status: "skip" };
  }
  if (c.action.kind === "shell" && !ctx.shell) {
    return { ...base, got: "skipped: curl, jq or base64 not found", status: "skip" };
  }
  const dir = await Deno.makeTempDir({ prefix: "conformance-" });
  try {
    return { ...base, got: await execute(c, ctx, dir), status: "pass" };
  } catch (err) {
    const got = err instanceof Mismatch ? err.message : `error: ${(err as Error).message}`;
    return { ...base, got, status: "fail" };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Whether the tools each kind of case needs are present. Debian's python3-requests/-pil land in
 * /usr/bin/python3, which a pyenv `python3` on PATH may shadow, so both are tried.
 */
export async function probeTools(): Promise<{ python?: string; shell: boolean }> {
  const ok = async (cmd: string, args: string[]) => {
    try {
      return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output())
        .code === 0;
    } catch {
      return false;
    }
  };
  const shell = (await ok("curl", ["--version"])) && (await ok("jq", ["--version"])) &&
    (await ok("base64", ["--version"]));
  let python: string | undefined;
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    if (await ok(candidate, ["-c", "import requests, PIL"])) {
      python = candidate;
      break;
    }
  }
  return { python, shell };
}
