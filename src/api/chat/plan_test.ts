import assert from "node:assert/strict";
import { ApiError } from "../../errors.ts";
import { FakeEngine, testConfig } from "../../testing.ts";
import { MAX_PROMPT_CHARS } from "../../../compute/mod.ts";
import { planChat, promptFromMessages } from "./plan.ts";

const deps = { engine: new FakeEngine(), config: testConfig() };

Deno.test("promptFromMessages: user texts joined, other roles and non-text parts ignored", () => {
  assert.equal(
    promptFromMessages([
      { role: "system", content: "ignored" },
      { role: "user", content: "a red" },
      {
        role: "user",
        content: [{ type: "text", text: "cube" }, {
          type: "image_url",
          image_url: { url: "data:," },
        }],
      },
    ] as never),
    "a red cube",
  );
});

Deno.test("planChat: extra_body wins over top-level fields; nulls in it are ignored", async () => {
  const plan = await planChat({
    messages: [{ role: "user", content: "x" }],
    size: "16x16",
    seed: 1,
    extra_body: { seed: 2, size: null },
  } as never, deps);
  assert.deepEqual([plan.options.width, plan.options.seed], [16, 2]);
  assert.equal(plan.model, "test/model");
});

Deno.test("planChat: an empty or too long prompt is a 400 on messages", async () => {
  const onMessages = (e: ApiError) => e.status === 400 && e.options.param === "messages";
  await assert.rejects(planChat({ messages: [{ role: "user", content: " " }] }, deps), onMessages);
  await assert.rejects(
    planChat({ messages: [{ role: "user", content: "x".repeat(MAX_PROMPT_CHARS + 1) }] }, deps),
    onMessages,
  );
});

Deno.test("planChat: a bad top-level generation field is a 422", async () => {
  await assert.rejects(
    planChat(
      { messages: [{ role: "user", content: "x" }], num_inference_steps: "many" } as never,
      deps,
    ),
    (e: ApiError) => e.status === 422,
  );
});
