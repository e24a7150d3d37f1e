import assert from "node:assert/strict";
import { Outcome } from "./outcome.ts";
import { fakeResult } from "../testing.ts";

Deno.test("Outcome: a plain response's status is the one sent; a stream's settles when it ends", async () => {
  const plain = new Outcome();
  assert.equal(plain.status(201), 201);
  const stream = new Outcome();
  const ended = stream.streaming();
  const status = stream.status(200);
  assert.ok(status instanceof Promise);
  ended(499);
  assert.equal(await status, 499);
});

Deno.test("Outcome: holds what the generation made", () => {
  assert.equal(new Outcome().generated, undefined);
  const outcome = new Outcome();
  const result = fakeResult({ prompt: "x" });
  outcome.made({ result, seed: 7, images: [], format: "png" });
  assert.equal(outcome.generated?.seed, 7);
});
