/**
 * `--device` → a {@linkcode Backend}. `auto` prefers a hardware WebGPU adapter, then native CPU,
 * then WASM (the measured order of speed on GPU servers and on CPU-only machines).
 *
 * @module
 */
import type { Backend, BackendSettings, DeviceChoice } from "./backend.ts";
import { BackendUnavailableError } from "../errors.ts";
import { withSharding } from "./sharding.ts";

/**
 * The Vulkan loader prints "XDG_RUNTIME_DIR is invalid or not set" (twice) when WebGPU starts in a
 * process without one (containers, CI, services). A private temporary folder silences it; the
 * loader only looks there for display sockets, which a server has none of.
 */
function ensureRuntimeDir(): void {
  try {
    if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
    Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "denoise-xdg-" }));
  } catch {
    // Without env or write permission the message stays; nothing else depends on it.
  }
}

/** Describes the WebGPU adapter, or `undefined` when there is none. */
export async function probeWebGpu(): Promise<
  { description: string; isFallback: boolean; shaderF16: boolean } | undefined
> {
  ensureRuntimeDir();
  // Through `unknown`: in a worker `navigator` is a WorkerNavigator, which does not overlap
  // Navigator enough for a direct cast (`deno test` type-checks the engine's worker that way).
  const gpu = (navigator as unknown as { gpu?: GPU }).gpu;
  if (!gpu) return undefined;
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return undefined;
    const info = adapter.info;
    const description = [info.vendor, info.architecture, info.description || info.device]
      .filter(Boolean).join(" ");
    return {
      description,
      isFallback: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      shaderF16: adapter.features.has("shader-f16"),
    };
  } catch {
    return undefined;
  }
}

/**
 * Resolves a device choice to a ready backend, or throws {@linkcode BackendUnavailableError};
 * graphs larger than `settings.shardSize` open in shards (./sharding.ts).
 */
export async function selectBackend(
  choice: DeviceChoice,
  settings: BackendSettings = {},
): Promise<Backend> {
  return withSharding(await deviceBackend(choice, settings), settings);
}

async function deviceBackend(
  choice: DeviceChoice,
  { threads = navigator.hardwareConcurrency, fuseAttention = true, onFusionRefused }:
    BackendSettings,
): Promise<Backend> {
  if (choice === "webgpu" || choice === "auto") {
    const adapter = await probeWebGpu();
    if (adapter && (choice === "webgpu" || !adapter.isFallback)) {
      const { createWebBackend } = await import("./onnxruntime_web.ts");
      return await createWebBackend("webgpu", adapter, { fuseAttention, onFusionRefused });
    }
    if (choice === "webgpu") {
      throw new BackendUnavailableError(
        "WebGPU is unavailable: navigator.gpu returned no adapter (on Linux install a Vulkan driver, e.g. mesa-vulkan-drivers)",
      );
    }
  }
  if (choice === "cpu" || choice === "auto") {
    try {
      const { createNodeBackend } = await import("./onnxruntime_node.ts");
      return createNodeBackend(threads, { fuseAttention, onFusionRefused });
    } catch (e) {
      if (choice === "cpu") {
        throw new BackendUnavailableError(
          `Native CPU backend (onnxruntime-node) failed to load: ${(e as Error).message}`,
        );
      }
    }
  }
  const { createWebBackend } = await import("./onnxruntime_web.ts");
  return await createWebBackend("wasm", undefined, { threads });
}
