/**
 * Cancellation reaches the running work at once: within one denoising step, before the next image
 * of a decode, and before encoding, through the engine in-process and through the real server
 * (whose access log then says 499).
 */
import assert from "node:assert/strict";
import { CancelledError } from "../../compute/mod.ts";
import { startServer, type TestServer } from "../test_server.ts";
import { Engine } from "./engine.ts";

const SD15 = new URL("../../fixtures/models/sd15-tiny", import.meta.url).pathname;

async function withEngine(run: (engine: Engine) => Promise<void>): Promise<void> {
  const engine = new Engine({ maxQueue: 4, maxBatchSize: 1, batchWaitMs: 0 });
  await engine.start(() => Promise.resolve(SD15), { device: "cpu" });
  assert.equal(engine.state.status, "ready", JSON.stringify(engine.state));
  try {
    await run(engine);
  } finally {
    await engine.close();
  }
}

Deno.test("engine: a cancel during denoising stops the generation within one step", async () => {
  await withEngine(async (engine) => {
    for (const at of [4, 9, 14]) {
      const controller = new AbortController();
      let after = 0;
      const outcome = await engine.generate({
        prompt: "slow",
        width: 1024,
        height: 1024,
        steps: 200,
        signal: controller.signal,
        onStep: ({ step }) => {
          if (controller.signal.aborted) after++;
          else if (step === at) controller.abort();
        },
      }).catch((e) => e);
      assert.ok(outcome instanceof CancelledError);
      // The step that was running when the flag was set may still report; no step starts after
      // it. (A cancel message alone took 2–29 steps to reach the worker.) One more is allowed for
      // a message of that step still in transit on a loaded machine.
      assert.ok(after <= 2, `${after} steps reported after the cancel at step ${at}`);
    }
  });
});

Deno.test("engine: a cancel once denoising is over stops the decode before its next image", async () => {
  await withEngine(async (engine) => {
    const controller = new AbortController();
    let cancelledAt = 0;
    const outcome = await engine.generate({
      prompt: "ten",
      width: 1024,
      height: 1024,
      n: 10,
      steps: 1,
      guidanceScale: 0,
      signal: controller.signal,
      onStep: () => {
        // The last step has ended: the worker now decodes ten 1024² images.
        cancelledAt = performance.now();
        controller.abort();
      },
    }).catch((e) => e);
    const ms = performance.now() - cancelledAt;
    // Before: the decode could not be stopped, and the finished result came back.
    assert.ok(outcome instanceof CancelledError, `got ${outcome}`);
    // One image of the fixture decodes in ~100–130 ms (ten: 1–2 s); generous for a machine under
    // the parallel test suite.
    assert.ok(ms < 1500, `stopped ${ms.toFixed(0)} ms after the cancel`);
  });
});

async function logLine(server: TestServer, id: string): Promise<number> {
  const pattern = new RegExp(`POST /v1/images/generations (\\d+) id=${id}\\b`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = server.output().match(pattern);
    if (m) return Number(m[1]);
    if (Date.now() > deadline) throw new Error(`no log line for ${id}:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("server: a client that leaves during the decode or the encoding is logged 499", async () => {
  const server = await startServer(["--model", SD15, "--device", "cpu"]);
  const post = (body: Record<string, unknown>, id: string, signal?: AbortSignal) =>
    fetch(`${server.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id },
      body: JSON.stringify(body),
      signal,
    });
  try {
    const ten = {
      prompt: "ten",
      size: "1024x1024",
      n: 10,
      num_inference_steps: 1,
      guidance_scale: 0,
    };
    // Where the time goes: the one step's progress event, then the decode and the encoding. The
    // second of two runs, so the first's warm-up does not stretch the window.
    let stepped = 0, ended = 0;
    for (const id of ["warm-up", "timing"]) {
      const sent = performance.now();
      const res = await post(
        { ...ten, stream: true, stream_options: { include_progress: true } },
        id,
      );
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      stepped = 0;
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        text += r.value;
        if (!stepped && text.includes("image_generation.progress")) {
          stepped = performance.now() - sent;
        }
      }
      ended = performance.now() - sent;
      assert.equal((text.match(/^event: image_generation\.completed/gm) ?? []).length, 10);
    }
    // The same request, not streamed, closed a third of the way from the end of its step to its
    // answer. A client that got its answer before the close proves nothing (the machine was
    // slower or faster this time): then again, closing earlier. One whose close came first must be
    // logged 499. Before: the decode and the encoding ran on, and the unread answer was logged 200.
    let closedFirst = false;
    for (let attempt = 0, fraction = 1 / 3; attempt < 3 && !closedFirst; attempt++, fraction /= 2) {
      const id = `left-during-decode-${attempt}`;
      const controller = new AbortController();
      const request = post(ten, id, controller.signal).then(
        async (res) => void await res.body?.cancel(),
        () => (closedFirst = true),
      );
      await new Promise((r) => setTimeout(r, stepped + (ended - stepped) * fraction));
      controller.abort();
      await request;
      if (closedFirst) assert.equal(await logLine(server, id), 499);
    }
    assert.ok(closedFirst, "every answer arrived before its client closed");
    const next = await post({ prompt: "quick", size: "64x64" }, "next");
    assert.equal(next.status, 200);
    await next.body?.cancel();
    assert.doesNotMatch(server.output(), /CancelledError|at .*\.ts:\d+/);
  } finally {
    await server.stop();
  }
});
