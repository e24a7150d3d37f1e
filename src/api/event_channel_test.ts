import assert from "node:assert/strict";
import { EventChannel } from "./event_channel.ts";

Deno.test("EventChannel: items pushed before and while reading arrive in order, then it ends", async () => {
  const channel = new EventChannel<number>();
  channel.push(1);
  setTimeout(() => {
    channel.push(2);
    channel.close();
    channel.push(3); // after close: dropped
  }, 5);
  const seen: number[] = [];
  for await (const n of channel) seen.push(n);
  assert.deepEqual(seen, [1, 2]);
});

Deno.test("EventChannel: fail delivers what was pushed, then throws", async () => {
  const channel = new EventChannel<string>();
  channel.push("a");
  channel.fail(new Error("boom"));
  const seen: string[] = [];
  await assert.rejects(async () => {
    for await (const s of channel) seen.push(s);
  }, /boom/);
  assert.deepEqual(seen, ["a"]);
});
