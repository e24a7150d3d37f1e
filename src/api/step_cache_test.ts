import assert from "node:assert/strict";
import { startServer } from "../test_server.ts";
import { testApp } from "../testing.ts";

const SERVER_CACHE = { backend: "tea_cache", threshold: 0.3, warmup: 1, maxCached: 3 } as const;

Deno.test("the cache field: the server's step cache by default, a request's override, a bad one the documented 422 (schema) or 400 naming cache", async () => {
  const { post, engine } = testApp({ config: { cache: SERVER_CACHE } });
  for (const path of ["/v1/images/generations", "/v1/chat/completions"]) {
    const body = path.includes("chat")
      ? { messages: [{ role: "user", content: "a red circle" }] }
      : { prompt: "a red circle" };
    assert.equal((await post(path, body)).status, 200);
    assert.equal((await post(path, { ...body, cache: { max_cached: 1 } })).status, 200);
    assert.equal((await post(path, { ...body, cache: "none" })).status, 200);
    const seer = { enable_taylorseer: true, taylorseer_order: 2 };
    assert.equal((await post(path, { ...body, cache: seer })).status, 200);
    const [plain, override, none, taylorseer] = engine.requests.splice(0);
    assert.deepEqual(plain.cache, SERVER_CACHE);
    assert.deepEqual(override.cache, { ...SERVER_CACHE, maxCached: 1 });
    assert.equal(none.cache, undefined);
    assert.deepEqual(taylorseer.cache, { ...SERVER_CACHE, taylorseer: 2 });
    // Out of the schema's ranges: the documented 422; what only the server checks (names, a
    // missing backend): 400.
    for (
      const [cache, status] of [
        [{ backend: "tea_cache", max_cached: 0 }, 422],
        ["fast", 422],
        [{ threshold: "high" }, 422],
        [{ backend: "tea_cache", rel_l1: 0.2 }, 400],
        [{ threshold: 0.2, backend: "tea_cache", rel_l1_thresh: 0.1 }, 400],
        [{ enable_taylorseer: true, taylorseer_order: 3 }, 422],
        [{ enable_taylorseer: "on" }, 422],
        [{ taylorseer_order: 2 }, 400],
      ] as const
    ) {
      const r = await post(path, { ...body, cache });
      assert.equal(r.status, status, JSON.stringify(cache));
      const json = await r.json();
      assert.equal(json.error.type, "invalid_request_error");
      assert.match(json.error.param, /^cache/);
      if (status === 400) assert.equal(json.detail, json.error.message);
      else assert.ok(json.detail.some((d: { loc: string[] }) => d.loc.includes("cache")));
    }
    assert.equal(engine.requests.length, 0);
  }
});

Deno.test({
  name:
    "served with --cache-backend: progress events mark cached steps, /metrics counts them, a request may turn it off",
  sanitizeResources: false,
  fn: async () => {
    const server = await startServer([
      "--cache-backend",
      "tea_cache",
      "--cache-config",
      '{"threshold":0.4}',
    ]);
    try {
      const generate = async (extra: Record<string, unknown>) => {
        const r = await fetch(`${server.url}/v1/images/generations`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            prompt: "a red circle on a blue background",
            seed: 3,
            stream: true,
            stream_options: { include_progress: true },
            ...extra,
          }),
        });
        assert.equal(r.status, 200);
        const events = (await r.text()).split("\n").filter((l) => l.startsWith("data: {"))
          .map((l) => JSON.parse(l.slice(6)));
        return events.filter((e) => e.type === "image_generation.progress");
      };
      const cached = await generate({});
      assert.equal(cached.length, 20);
      const skipped = cached.filter((e) => e.cached).map((e) => e.step);
      assert.ok(skipped.length >= 6, `cached steps ${skipped}`);
      assert.ok(!cached[0].cached && !cached[19].cached);
      const plain = await generate({ cache: "none" });
      assert.ok(plain.every((e) => e.cached === false));
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const count = (cachedLabel: string) =>
        Number(
          metrics.split("\n").find((l) =>
            l.startsWith("denoise_steps_total{") && l.includes(`cached="${cachedLabel}"`)
          )?.split(" ").at(-1),
        );
      assert.equal(count("true"), skipped.length);
      assert.equal(count("false"), 40 - skipped.length);
    } finally {
      await server.stop();
    }
  },
});
