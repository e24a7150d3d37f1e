import assert from "node:assert/strict";
import { BackendUnavailableError } from "../errors.ts";
import { createWebBackend } from "./onnxruntime_web.ts";

Deno.test("WASM refuses, at load and saying why, a graph whose weights do not fit its memory", async () => {
  const unet = new URL("../../fixtures/models/sd15-tiny/unet/model.onnx", import.meta.url).pathname;
  const small = await createWebBackend("wasm", undefined, { maxWasmWeightBytes: 10_000 });
  await assert.rejects(
    small.createSession({ path: unet, externalDataPath: `${unet}_data` }),
    (e: Error) =>
      e instanceof BackendUnavailableError &&
      /holds 0.0 GiB of weights; WASM's 4 GiB memory runs at most 0.0 GiB.*--device cpu/.test(
        e.message,
      ),
  );
  const session = await (await createWebBackend("wasm")).createSession({
    path: unet,
    externalDataPath: `${unet}_data`,
  });
  await session.release();
});
