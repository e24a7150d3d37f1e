/**
 * The inference worker: owns the pipeline, its queue and the batching, so that model loading and
 * every network call run off the HTTP thread. Driven by {@linkcode ToWorker} messages.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import process from "node:process";
import {
  type BatchOutcome,
  formatBytes,
  idleCleanup,
  loadPipeline,
  type Pipeline,
} from "../../compute/mod.ts";
import { headBatchIsFull, type Queued, takeBatch } from "./batcher.ts";
import {
  type BatchSettings,
  CancelFlag,
  errorMessage,
  type FromWorker,
  type GenerationRequest,
  type ToWorker,
} from "./protocol.ts";

// onnxruntime-web resolves its files against `location.origin`, which is the string "null" in a
// file-URL worker (an invalid base); without `location` it falls back to module URLs as on the
// main thread. Its Node check needs `process`, which workers lack.
Object.defineProperty(globalThis, "location", { value: undefined, configurable: true });
(globalThis as { process?: unknown }).process ??= process;

interface Job extends Queued {
  request: GenerationRequest;
  /** Set by the engine when the request is cancelled. */
  cancel: CancelFlag;
  reportSteps: boolean;
}

let pipeline: Pipeline | undefined;
let batching: BatchSettings = { maxBatchSize: 1, batchWaitMs: 0 };
const queue: Job[] = [];
/** Ids of the jobs in the running batch. */
const running = new Set<number>();
let waitTimer: ReturnType<typeof setTimeout> | undefined;
/** Requests in the last batch: more than one means clients are arriving together. */
let lastBatchRequests = 0;
/**
 * The load and the batch in progress: while one is unsettled, this thread may be inside ONNX
 * Runtime's native code, which nothing can interrupt (see "release").
 */
const native = new Set<Promise<unknown>>();
/** Set by "release": no batch starts any more. */
let closing = false;

const post = (message: FromWorker, transfer: Transferable[] = []) =>
  self.postMessage(message, transfer);

/**
 * Starts the next batch now, or after the batch window when the engine was idle and the last
 * batch had batch-mates: under concurrent load, clients whose answers went out together come back
 * a few milliseconds apart, and waiting gathers them into one full batch; a lone client, whose
 * last batch was itself alone, never waits.
 */
function schedule(wasIdle: boolean): void {
  if (closing || running.size > 0 || queue.length === 0 || waitTimer !== undefined) return;
  if (
    !wasIdle || lastBatchRequests < 2 || batching.batchWaitMs <= 0 ||
    headBatchIsFull(queue, batching.maxBatchSize)
  ) {
    startBatch();
    return;
  }
  waitTimer = setTimeout(() => {
    waitTimer = undefined;
    startBatch();
  }, batching.batchWaitMs);
}

function startBatch(): void {
  const run = runBatch();
  native.add(run);
  void run.finally(() => native.delete(run));
}

/**
 * Once idle for 250 ms, gives the last batches' buffers back to the system: their JavaScript
 * arrays and ONNX Runtime's freed buffers. That takes 6–18 ms, so a request that arrives first
 * cancels it rather than waiting behind it.
 */
const cleanup = idleCleanup(250, () => running.size > 0 || queue.length > 0);

async function runBatch(): Promise<void> {
  if (waitTimer !== undefined) {
    clearTimeout(waitTimer);
    waitTimer = undefined;
  }
  const batch = takeBatch(queue, batching.maxBatchSize);
  if (batch.length === 0) return;
  lastBatchRequests = batch.length;
  for (const job of batch) running.add(job.id);
  post({
    type: "started",
    ids: batch.map((j) => j.id),
    images: batch.reduce((s, j) => s + j.images, 0),
  });
  let outcomes: BatchOutcome[];
  try {
    outcomes = await pipeline!.generateBatch(batch.map((job) => ({
      ...job.request,
      signal: job.cancel,
      onStep: job.reportSteps ? (info) => post({ type: "step", id: job.id, info }) : undefined,
      onPreview: (preview) =>
        post(
          { type: "preview", id: job.id, preview },
          preview.images.map((image) => image.data.buffer as ArrayBuffer),
        ),
    })));
  } catch (error) {
    outcomes = batch.map(() => ({ ok: false, error: error as Error }));
  }
  batch.forEach((job, k) => {
    running.delete(job.id);
    const outcome = outcomes[k];
    if (outcome.ok) {
      post(
        { type: "done", id: job.id, result: outcome.result },
        outcome.result.images.map((image) => image.data.buffer as ArrayBuffer),
      );
    } else post({ type: "failed", id: job.id, error: errorMessage(outcome.error) });
  });
  if (queue.length === 0) cleanup.schedule();
  schedule(false);
}

/** Loads the model and answers with what it is, or why it failed. */
async function load(message: Extract<ToWorker, { type: "load" }>): Promise<void> {
  batching = message.batching;
  const loaded = Promise.withResolvers<void>();
  native.add(loaded.promise);
  try {
    // compute/mod.ts is light and imports ONNX Runtime's packages here, on this first call:
    // after the shims above, and with this module's message handler already in place (a first
    // run installing node_modules takes seconds; a message arriving without one is dropped).
    pipeline = await loadPipeline(message.dir, {
      device: message.device,
      defaults: message.defaults,
      lora: message.lora,
      vae: message.vae,
      execution: message.execution,
      variant: message.variant,
      onNotice: (notice) => post({ type: "warning", message: notice }),
      backend: {
        ...message.backend,
        onFusionRefused: (error) =>
          post({
            type: "warning",
            message: `a graph's fused attention did not load; it runs as exported (${
              error.message.split("\n")[0]
            })`,
          }),
        onSharded: (graph, bytes) =>
          post({
            type: "info",
            message: `${graph} opened in ${bytes.length} shards (${
              bytes.map(formatBytes).join(", ")
            } of weights)`,
          }),
      },
    });
    const { family, device, defaults, sizeMultiple, maxEditImages } = pipeline;
    post({ type: "loaded", info: { family, device, defaults, sizeMultiple, maxEditImages } });
  } catch (error) {
    post({ type: "load-failed", error: errorMessage(error) });
  } finally {
    native.delete(loaded.promise);
    loaded.resolve();
  }
}

/** Queues a generation with its batch key, or fails it at once. */
function enqueue({ id, request, reportSteps, cancel }: Extract<ToWorker, { type: "generate" }>) {
  cleanup.cancel();
  if (closing) {
    post({ type: "failed", id, error: { name: "CancelledError", message: "Engine closed" } });
    return;
  }
  let key: string;
  try {
    // Requests with other step-cache settings never share a batch (its first one's would apply).
    key = `${pipeline!.batchKey(request)}|${JSON.stringify(request.cache ?? null)}`;
  } catch (error) {
    post({ type: "failed", id, error: errorMessage(error) });
    return;
  }
  const wasIdle = running.size === 0 && queue.length === 0;
  queue.push({
    id,
    key,
    images: request.n ?? 1,
    request,
    reportSteps,
    cancel: new CancelFlag(cancel),
  });
  schedule(wasIdle);
}

/** A running job has already seen its flag; a waiting one is answered here. */
function cancelWaiting(id: number): void {
  const waiting = queue.findIndex((job) => job.id === id);
  if (waiting >= 0) {
    queue.splice(waiting, 1);
    post({
      type: "failed",
      id,
      error: { name: "CancelledError", message: "Generation cancelled" },
    });
  }
}

/**
 * The process exits once this is answered, and exit destroys ONNX Runtime's globals: so the
 * answer waits until no native call can still be running here (a session being created by the
 * load, a batch's run; cancelled batches stop at their next step), then releases the sessions.
 * Nothing native starts after it.
 */
async function release(): Promise<void> {
  closing = true;
  for (const job of queue.splice(0)) {
    post({
      type: "failed",
      id: job.id,
      error: { name: "CancelledError", message: "Engine closed" },
    });
  }
  clearTimeout(waitTimer);
  while (native.size > 0) await Promise.allSettled([...native]);
  cleanup.cancel();
  await pipeline?.release();
  pipeline = undefined;
  post({ type: "released" });
}

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case "load":
      return await load(message);
    case "generate":
      return enqueue(message);
    case "cancel":
      return cancelWaiting(message.id);
    case "release":
      return await release();
  }
};

// The engine sends nothing before this: whatever the module's load costs, no message can arrive
// before the handler above exists.
post({ type: "listening" });
