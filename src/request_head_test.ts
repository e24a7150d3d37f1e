import assert from "node:assert/strict";
import { checkHead } from "./request_head.ts";

const head = (text: string) => checkHead(new TextEncoder().encode(text));
const refusal = (text: string) => {
  const r = head(text);
  assert.equal(r.ok, false, text);
  return r.ok ? undefined : r;
};

Deno.test("checkHead: a well-formed head is accepted with its method, target and request id", () => {
  assert.deepEqual(
    head("\r\nPOST /v1/x HTTP/1.1\r\nHost: a:80\r\nx-request-id: r1\r\nContent-Length: 2\r\n\r\n"),
    { ok: true, method: "POST", target: "/v1/x", requestId: "r1" },
  );
  assert.equal(head("GET http://a.example/v1 HTTP/1.0\r\n\r\n").ok, true);
});

Deno.test("checkHead: each malformation is refused with its own message", () => {
  const cases: [string, RegExp][] = [
    ["GET / HTTP/1.1\nHost: a\r\n\r\n", /bare CR or LF/],
    ["GET  / HTTP/1.1\r\n\r\n", /one space apart/],
    ["GET / HTTP/2.0\r\n\r\n", /HTTP version 'HTTP\/2.0'/],
    ["OPTIONS * HTTP/1.1\r\n\r\n", /asterisk form/],
    ["GET nopath HTTP/1.1\r\n\r\n", /must be a path/],
    ["GET / HTTP/1.1\r\n folded\r\n\r\n", /obsolete line folding/],
    ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", /NAME: VALUE/],
    ["GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", /control character/],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /more than one Host/],
    ["GET / HTTP/1.1\r\nHost: a b\r\n\r\n", /Host header must be/],
    ["POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", /non-negative decimal/],
    ["POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", /disagree/],
    ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", /not allowed in HTTP\/1.0/],
    ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", /exactly 'chunked'/],
    [
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
      /both Content-Length and Transfer-Encoding/,
    ],
  ];
  for (const [text, message] of cases) {
    const r = refusal(text);
    assert.equal(r?.status, 400, text);
    assert.match(r!.message, message, text);
  }
});

Deno.test("checkHead: too many header fields is a 431", () => {
  const fields = Array.from({ length: 1000 }, (_, i) => `x-${i}: v\r\n`).join("");
  const r = refusal(`GET / HTTP/1.1\r\n${fields}\r\n`);
  assert.deepEqual([r?.status, r?.code], [431, "too_many_headers"]);
});
