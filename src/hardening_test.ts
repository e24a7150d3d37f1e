/**
 * Operator-facing behaviour of the real server: one-line CLI errors, logs, auth details, truthful
 * load failures, and nothing from the client (Host, long ids) or the filesystem leaking out.
 */
import assert from "node:assert/strict";
import { startServer, startUnloadableServer } from "./test_server.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const SD15 = new URL("../fixtures/models/sd15-tiny", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env,
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("--version; a busy port and a missing model folder are one-line errors with exit 1", async () => {
  const version = await run(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^denoise \d+\.\d+\.\d+\n$/);

  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const busy = await run(["--port", String(port), "--device", "cpu"]);
  assert.equal(busy.code, 1);
  assert.match(
    busy.stderr,
    new RegExp(`ERROR +port ${port} on 127.0.0.1 is already in use by pid ${Deno.pid} \\(deno\\)`),
  );
  assert.doesNotMatch(busy.stderr + busy.stdout, /\n\s+at /);

  const missing = await run(["--model", "./missing_dir", "--port", "0"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /the model folder \.\/missing_dir does not exist/);
  assert.doesNotMatch(missing.stderr, /models--|\n\s+at /);
});

const HOSTILE_PROMPT = "a\n2026-12-06T00:00:00.000Z ERROR FORGED \u202egnp.exe \x1b[31mred\u2028";

Deno.test("--log-format json: every line is a JSON object with ts, level and msg; debug logs the prompt", async () => {
  const server = await startServer([
    "--model",
    SD15,
    "--device",
    "cpu",
    "--log-format",
    "json",
    "--log-level",
    "debug",
  ]);
  try {
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace-1" },
      body: JSON.stringify({ prompt: "a secret garden", size: "64x64", num_inference_steps: 1 }),
    });
    await res.body?.cancel();
    // Client text that used to land raw: a bidi override and a terminal escape, in the path
    // and (at debug) in the prompt.
    await (await fetch(`${server.url}/v1/abc%E2%80%AEgnp%1b[31m`)).body?.cancel();
    const hostile = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace-2" },
      body: JSON.stringify({ prompt: HOSTILE_PROMPT, size: "64x64", num_inference_steps: 1 }),
    });
    await hostile.body?.cancel();
  } finally {
    await server.stop();
  }
  for (const line of server.output().trim().split("\n")) {
    assert.doesNotMatch(line, /\p{Cc}|\p{Bidi_Control}|\u2028/u);
  }
  const lines = server.output().trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.id === "trace-2" && l.prompt === HOSTILE_PROMPT));
  for (const line of lines) {
    assert.match(line.ts, /^\d{4}-\d\d-\d\dT/);
    assert.ok(["debug", "info", "warning", "error"].includes(line.level));
    assert.equal(typeof line.msg, "string");
  }
  assert.ok(
    lines.some((l) => l.level === "debug" && l.prompt === "a secret garden" && l.id === "trace-1"),
  );
  assert.ok(lines.some((l) => l.msg === "POST /v1/images/generations 200" && l.id === "trace-1"));
});

Deno.test("auth: any-case Bearer scheme, WWW-Authenticate on 401, /metrics behind the key unless --public-metrics", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu", "--api-key", "k3y"]);
  const open = await startServer([
    "--model",
    SD15,
    "--device",
    "cpu",
    "--api-key",
    "k3y",
    "--public-metrics",
  ]);
  try {
    const get = async (url: string, authorization?: string) => {
      const res = await fetch(url, { headers: authorization ? { authorization } : {} });
      await res.body?.cancel();
      return res;
    };
    assert.equal((await get(`${server.url}/v1/models`, "bearer k3y")).status, 200);
    for (const header of [undefined, "Bearer nope", "Basic azN5"]) {
      const denied = await get(`${server.url}/v1/models`, header);
      assert.equal(denied.status, 401, String(header));
      assert.match(denied.headers.get("www-authenticate") ?? "", /^Bearer/);
    }
    const body = await (await fetch(`${server.url}/v1/models`)).json();
    assert.equal(body.error.code, "invalid_api_key");
    assert.equal((await get(`${server.url}/metrics`)).status, 401);
    assert.equal((await get(`${server.url}/v1/images/files/nope`)).status, 401);
    assert.equal((await get(`${server.url}/metrics`, "Bearer k3y")).status, 200);
    assert.equal((await get(`${open.url}/metrics`)).status, 200);
    assert.equal((await get(`${server.url}/health`)).status, 200);
    assert.equal((await get(`${server.url}/ping`)).status, 200);
  } finally {
    await server.stop();
    await open.stop();
  }
});

Deno.test("a model that cannot load is a permanent 503 (no retry-after, no paths); --exit-on-load-failure exits 1", async () => {
  const server = await startUnloadableServer();
  try {
    const deadline = Date.now() + 10_000;
    let health;
    do {
      health = await (await fetch(`${server.url}/health`)).json();
    } while (!/failed/.test(health.reason) && Date.now() < deadline);
    assert.match(health.reason, /^Model failed to load: /);
    assert.doesNotMatch(health.reason, /\/tmp\/|\/work\/|onnxruntime/);
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x" }),
    });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), null);
    assert.equal(res.headers.get("x-should-retry"), "false");
    assert.equal((await res.json()).error.code, "model_load_failed");
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    assert.match(models.data[0].root, /^unloadable-model-\w+$/);
  } finally {
    await server.stop();
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/model_index.json`,
      '{"_class_name":"StableDiffusionPipeline"}',
    );
    const exit = await run([
      "--model",
      dir,
      "--port",
      "0",
      "--device",
      "cpu",
      "--exit-on-load-failure",
    ]);
    assert.equal(exit.code, 1);
    assert.match(exit.stderr, /model failed to load/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image URLs come from --public-url or the listening address, never the Host header; long request ids are replaced", async () => {
  const plain = await startServer(["--model", SD15, "--device", "cpu"]);
  const proxied = await startServer([
    "--model",
    SD15,
    "--device",
    "cpu",
    "--public-url",
    "https://images.example.com/",
  ]);
  try {
    const url = async (base: string) => {
      const res = await fetch(`${base}/v1/images/generations`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          host: "evil.example",
          "x-request-id": "x".repeat(1000),
        },
        body: JSON.stringify({ prompt: "x", size: "64x64", response_format: "url" }),
      });
      assert.match(res.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
      return (await res.json()).data[0].url as string;
    };
    assert.ok((await url(plain.url)).startsWith(`${plain.url}/v1/images/files/`));
    assert.match(
      await url(proxied.url),
      /^https:\/\/images\.example\.com\/v1\/images\/files\/\w+$/,
    );
  } finally {
    await plain.stop();
    await proxied.stop();
  }
});

Deno.test("the contract holds: 415, empty size, encoder limits up front, the whole chat prompt", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  try {
    const send = async (path: string, body: string, contentType?: string) => {
      const t = performance.now();
      const res = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: contentType ? { "content-type": contentType } : {},
        body,
      });
      const json = await res.json();
      assert.deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"]);
      return { status: res.status, json, ms: performance.now() - t };
    };
    const images = "/v1/images/generations";
    for (const type of [undefined, "text/plain"]) {
      const r = await send(images, '{"prompt":"x"}', type);
      assert.equal(r.status, 415);
      assert.equal(r.json.error.code, "unsupported_media_type");
    }
    const empty = await send(images, '{"prompt":"x","size":""}', "application/json");
    assert.equal(empty.status, 422);
    assert.deepEqual(empty.json.detail[0].loc, ["body", "size"]);
    for (
      const [size, format] of [["64x16384", "webp"], ["16384x64", "webp"], ["8x65544", "jpeg"]]
    ) {
      const r = await send(
        images,
        JSON.stringify({ prompt: "x", size, output_format: format, num_inference_steps: 50 }),
        "application/json",
      );
      assert.equal(r.status, 400, `${size} ${format}`);
      assert.match(r.json.error.message, /allows at most \d+ pixels per side/);
      assert.ok(r.ms < 1000, "refused before any work");
    }
    const long = { role: "user", content: "a".repeat(20_000) };
    const chat = await send(
      "/v1/chat/completions",
      JSON.stringify({ messages: [long, long] }),
      "application/json",
    );
    assert.equal(chat.status, 400);
    assert.equal(chat.json.error.param, "messages");
  } finally {
    await server.stop();
  }
});

Deno.test("a half-sent body gets 408 after --body-timeout; --max-concurrent-requests answers 429 beyond it", async () => {
  const server = await startServer([
    "--model",
    SD15,
    "--device",
    "cpu",
    "--body-timeout",
    "0.5",
    "--max-concurrent-requests",
    "1",
  ]);
  try {
    const { hostname, port } = new URL(server.url);
    using conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(
      new TextEncoder().encode(
        `POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":`,
      ),
    );
    await new Promise((r) => setTimeout(r, 100));
    const busy = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", size: "64x64" }),
    });
    assert.equal(busy.status, 429);
    assert.equal((await busy.json()).error.code, "server_busy");
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer);
    const answer = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.match(answer, /"code":"body_timeout"/);
    const after = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", size: "64x64" }),
    });
    assert.equal(after.status, 200);
    await after.body?.cancel();
  } finally {
    await server.stop();
  }
});

Deno.test("a request head that does not arrive within --header-timeout gets 408, an oversized one 431, malformed framing 400, all logged; forged paths stay one log line; whole ones are served", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu", "--header-timeout", "0.5"]);
  try {
    const { hostname, port } = new URL(server.url);
    const answer = async (bytes: string) => {
      const conn = await Deno.connect({ hostname, port: Number(port) });
      await conn.write(new TextEncoder().encode(bytes));
      const started = performance.now();
      // The whole answer: the guard closes the connection after it.
      const text = await new Response(conn.readable).text();
      const ms = performance.now() - started;
      try {
        conn.close();
      } catch {
        // Closed with its readable side.
      }
      return { text, ms };
    };
    // Slowloris: the head never ends. Without the guard the connection stays open for good.
    const slow = await answer("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n");
    assert.match(slow.text, /^HTTP\/1\.1 408/);
    assert.match(slow.text, /"code":"header_timeout"/);
    assert.ok(slow.ms >= 400 && slow.ms < 5000, `${slow.ms} ms`);
    const big = await answer(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70_000)}`);
    assert.match(big.text, /^HTTP\/1\.1 431/);
    assert.match(big.text, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
    // Malformed framing: the guard's 400 in the documented shape, not Deno's empty one.
    const framing = await answer(
      "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" +
        "Transfer-Encoding: chunked\r\nX-Request-Id: framing-1\r\n\r\n",
    );
    assert.match(framing.text, /^HTTP\/1\.1 400 /);
    assert.match(framing.text, /\r\nx-request-id: framing-1\r\n/);
    assert.match(framing.text, /"code":"malformed_request"/);
    // A body whose chunked framing breaks: 400 in the documented shape, not a 500 with an ERROR
    // line.
    // (The broken chunk comes once the app reads the body; sent at once, Deno finds the error
    // before it dispatches the request, and nothing runs.)
    {
      const conn = await Deno.connect({ hostname, port: Number(port) });
      const send = (s: string) => conn.write(new TextEncoder().encode(s));
      await send(
        "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          "Transfer-Encoding: chunked\r\nX-Request-Id: chunks-1\r\n\r\n",
      );
      await new Promise((r) => setTimeout(r, 200));
      await send("zz\r\nabc\r\n0\r\n\r\n");
      const text = await new Response(conn.readable).text();
      assert.match(text, /^HTTP\/1\.1 400 /);
      assert.match(text, /\r\nx-request-id: chunks-1\r\n/);
      assert.match(text, /"code":"malformed_request"/);
    }
    // Paths that used to forge or disguise log lines (no key needed): one escaped line each.
    const forged = [
      "/v1/x%0a2026-12-06T00:00:00.000Z%20ERROR%20%20%20FORGED%20LINE",
      "/v1/%1b[31mred",
      "/v1/a%00b",
      "/v1/abc%E2%80%AEgnp.exe",
    ];
    for (const path of forged) {
      assert.match(
        (await answer(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)).text,
        /^HTTP\/1\.1 404/,
      );
    }
    // A whole request is served, with the connection closed after it.
    const ok = await answer("GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    assert.match(ok.text, /^HTTP\/1\.1 200/);
    assert.match(ok.text, /connection: close/i);
    const res = await fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", size: "64x64" }),
    });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).data.length, 1);
  } finally {
    await server.stop();
  }
  const log = server.output();
  assert.doesNotMatch(log, /FORGED LINE/);
  for (const line of log.split("\n").filter((l) => /^\d{4}-/.test(l))) {
    assert.doesNotMatch(line, /\p{Cc}|\p{Bidi_Control}/u);
  }
  assert.match(
    log,
    /INFO {4}GET \/v1\/x%0a2026-12-06T00:00:00\.000Z%20ERROR%20%20%20FORGED%20LINE 404 id=/,
  );
  assert.match(log, /INFO {4}GET \/health 408 id=\S+ ms=\d+ code=header_timeout/);
  assert.match(log, /INFO {4}POST \/v1\/images\/generations 400 id=chunks-1 /);
  assert.doesNotMatch(log, / ERROR /);
  assert.match(
    log,
    /INFO {4}POST \/v1\/images\/generations 400 id=framing-1 ms=\d+ code=malformed_request/,
  );
});
