import assert from "node:assert/strict";
import { FRAMING_CASES, sendRaw } from "../conformance/framing.ts";
import { serveGuarded } from "./header_guard.ts";
import { createLogger } from "./log.ts";

/** A guarded server whose app echoes what `Deno.serve` handed it; its log lines are kept. */
async function withGuard(test: (url: string, host: string, log: string[]) => Promise<void>) {
  const lines: string[] = [];
  let listening!: (addr: { hostname: string; port: number }) => void;
  const addr = new Promise<{ hostname: string; port: number }>((r) => (listening = r));
  const server = serveGuarded(async (req) => {
    const body = await req.text();
    return Response.json({ method: req.method, url: req.url, body });
  }, {
    hostname: "127.0.0.1",
    port: 0,
    headerTimeoutS: 5,
    onListen: listening,
    log: createLogger("info", "text", (line) => lines.push(line)),
  });
  try {
    const { hostname, port } = await addr;
    await test(`http://${hostname}:${port}`, `${hostname}:${port}`, lines);
  } finally {
    await server.shutdown();
  }
}

Deno.test("the guard answers every malformed framing case itself: 400/431, documented shape, request id, one log line", async () => {
  await withGuard(async (url, host, log) => {
    for (const c of FRAMING_CASES) {
      const res = await sendRaw(
        url,
        c.build({ method: "POST", path: "/v1/images/generations", host }),
      );
      assert.equal(res.status, c.status, c.name);
      assert.match(res.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/, c.name);
      const body = await res.json();
      assert.equal(body.detail, body.error.message, c.name);
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.param, null);
      assert.equal(body.error.code, c.status === 431 ? "too_many_headers" : "malformed_request");
    }
    assert.equal(log.length, FRAMING_CASES.length);
    for (const line of log) assert.match(line, / (400|431) id=[0-9a-f-]{36} ms=\d+ code=/);
    assert.ok(log.some((l) => l.includes("POST /v1/images/generations 400")));
  });
});

Deno.test("a refused request keeps the client's x-request-id, and its log line is escaped", async () => {
  await withGuard(async (url, host, log) => {
    const res = await sendRaw(
      url,
      `GET /v1/x\x1b[31m HTTP/1.1\r\nHost: ${host}\r\nX-Request-Id: trace-9\r\nContent-Length: -1\r\n\r\n`,
    );
    assert.equal(res.status, 400);
    assert.equal(res.headers.get("x-request-id"), "trace-9");
    await res.body?.cancel();
    assert.equal(log.length, 1);
    assert.match(log[0], /INFO {4}GET \/v1\/x\\u001b\[31m 400 id=trace-9 /);
  });
});

Deno.test("well-formed requests pass the guard unchanged, in every framing the contract allows", async () => {
  await withGuard(async (url, host, log) => {
    const body = '{"prompt":"x"}';
    const cases: [string, string, string][] = [
      ["plain GET", `GET /v1/models?x=1 HTTP/1.1\r\nHost: ${host}\r\n\r\n`, ""],
      ["HTTP/1.0", `GET /v1/models HTTP/1.0\r\n\r\n`, ""],
      [
        "Content-Length",
        `POST /v1/images/generations HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 14\r\n\r\n${body}`,
        body,
      ],
      [
        "the same Content-Length twice",
        `POST /a HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 14\r\ncontent-length: 14\r\n\r\n${body}`,
        body,
      ],
      [
        "chunked, any case",
        `POST /a HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: Chunked\r\n\r\ne\r\n${body}\r\n0\r\n\r\n`,
        body,
      ],
      [
        "absolute-form target",
        `GET http://${host}/v1/models HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
        "",
      ],
      ["an empty line first", `\r\nGET /a HTTP/1.1\r\nHost: ${host}\r\n\r\n`, ""],
      [
        "obs-text and tabs in a value",
        `GET /a HTTP/1.1\r\nHost: ${host}\r\nX-A: \xe9\tb\r\n\r\n`,
        "",
      ],
      [
        "100 header fields",
        `GET /a HTTP/1.1\r\n${Array.from({ length: 100 }, (_, i) => `X-${i}: v\r\n`).join("")}\r\n`,
        "",
      ],
      [
        "Expect: 100-continue",
        `POST /a HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\nContent-Length: 14\r\n\r\n${body}`,
        body,
      ],
    ];
    for (const [name, raw, sent] of cases) {
      const res = await sendRaw(url, raw);
      assert.equal(res.status, 200, name);
      assert.equal((await res.json()).body, sent, name);
    }
    assert.deepEqual(log, []);
  });
});
