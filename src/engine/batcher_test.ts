import assert from "node:assert/strict";
import { headBatchIsFull, type Queued, takeBatch } from "./batcher.ts";

const q = (id: number, key: string, images = 1): Queued => ({ id, key, images });

Deno.test("takeBatch: the head plus later same-key requests that fit, in arrival order", () => {
  const queue = [q(1, "a"), q(2, "b"), q(3, "a", 2), q(4, "a", 4), q(5, "a")];
  assert.deepEqual(takeBatch(queue, 4).map((x) => x.id), [1, 3, 5]);
  assert.deepEqual(queue.map((x) => x.id), [2, 4]);
  assert.deepEqual(takeBatch(queue, 4).map((x) => x.id), [2]);
  assert.deepEqual(takeBatch(queue, 4).map((x) => x.id), [4]);
  assert.deepEqual(takeBatch(queue, 4), []);
});

Deno.test("takeBatch: a request larger than the batch runs alone", () => {
  const queue = [q(1, "a", 10), q(2, "a")];
  assert.deepEqual(takeBatch(queue, 8).map((x) => x.id), [1]);
  assert.deepEqual(queue.map((x) => x.id), [2]);
});

Deno.test("headBatchIsFull counts only the head's key", () => {
  assert.equal(headBatchIsFull([q(1, "a", 2), q(2, "b", 8)], 4), false);
  assert.equal(headBatchIsFull([q(1, "a", 2), q(2, "b", 8), q(3, "a", 2)], 4), true);
  assert.equal(headBatchIsFull([], 4), false);
});
