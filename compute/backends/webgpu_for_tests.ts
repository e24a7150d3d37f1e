/**
 * Whether the WebGPU tests run here, shared by every test file with a WebGPU case.
 *
 * They run on a hardware adapter with `shader-f16`, or on Mesa's lavapipe (software Vulkan, which
 * has it: installed on purpose with `apt-get install mesa-vulkan-drivers`). Any other adapter is
 * skipped, with the reason in the test's name: without a Vulkan driver, Deno still finds Mesa's
 * llvmpipe through OpenGL, which lacks `shader-f16` (the float16 fixtures need it) and takes 3–11
 * minutes a test.
 *
 * @module
 */
import { probeWebGpu } from "./device.ts";

/** The adapter the WebGPU tests use, or why they are ignored. */
export type WebGpuForTests =
  | { adapter: NonNullable<Awaited<ReturnType<typeof probeWebGpu>>>; ignored: undefined }
  | { adapter: undefined; ignored: string };

/** Mesa's software rasteriser, as lavapipe (Vulkan) and llvmpipe (OpenGL) name their adapters. */
const MESA_SOFTWARE = /llvmpipe|lavapipe/i;

/** Applies the rule above to a probed adapter (`undefined`: none found). */
export function webGpuTestRule(
  adapter: Awaited<ReturnType<typeof probeWebGpu>>,
): WebGpuForTests {
  const install = "install mesa-vulkan-drivers (lavapipe) to run them on the CPU";
  if (!adapter) return { adapter: undefined, ignored: `no WebGPU adapter; ${install}` };
  const kind = adapter.isFallback ? "software" : "hardware";
  if (!adapter.shaderF16) {
    return {
      adapter: undefined,
      ignored: `the ${kind} adapter "${adapter.description}" lacks shader-f16; ${install}`,
    };
  }
  if (adapter.isFallback && !MESA_SOFTWARE.test(adapter.description)) {
    return {
      adapter: undefined,
      ignored: `the software adapter "${adapter.description}" is not lavapipe`,
    };
  }
  return { adapter, ignored: undefined };
}

/** Probes this machine's adapter and applies {@linkcode webGpuTestRule}. */
export async function webGpuForTests(): Promise<WebGpuForTests> {
  return webGpuTestRule(await probeWebGpu());
}
