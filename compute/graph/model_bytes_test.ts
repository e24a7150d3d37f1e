import assert from "node:assert/strict";
import { decodeModel, encodeModel, mentions } from "./model_bytes.ts";

Deno.test("model bytes: encode and decode round-trip, and what is no model decodes to nothing", () => {
  const bytes = encodeModel({ graph: { node: [{ opType: "Softmax", name: "s" }] } });
  assert.equal(decodeModel(bytes)?.graph?.node?.[0].opType, "Softmax");
  assert.equal(decodeModel(new Uint8Array([1, 2, 3])), undefined);
});

Deno.test("model bytes: mentions finds an operator type anywhere in the bytes", () => {
  const bytes = encodeModel({ graph: { node: [{ opType: "Softmax" }, { opType: "Conv" }] } });
  assert.ok(mentions(bytes, "Softmax"));
  assert.ok(mentions(bytes, "Conv"));
  assert.ok(!mentions(bytes, "MatMul"));
  // A prefix at the very end is no match.
  assert.ok(!mentions(new TextEncoder().encode("xxSoftma"), "Softmax"));
});
