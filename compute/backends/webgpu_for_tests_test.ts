import assert from "node:assert/strict";
import { webGpuTestRule } from "./webgpu_for_tests.ts";

const llvmpipe = "65541 llvmpipe (LLVM 15.0.6, 256 bits)";

Deno.test("WebGPU tests run on hardware with shader-f16 and on lavapipe, and say why not elsewhere", () => {
  const gpu = { description: "4318 NVIDIA H100", isFallback: false, shaderF16: true };
  const lavapipe = { description: llvmpipe, isFallback: true, shaderF16: true };
  assert.equal(webGpuTestRule(gpu).adapter, gpu);
  assert.equal(webGpuTestRule(lavapipe).adapter, lavapipe);
  // Without a Vulkan driver Deno finds llvmpipe through OpenGL, without shader-f16.
  assert.match(
    webGpuTestRule({ description: llvmpipe, isFallback: true, shaderF16: false }).ignored!,
    /software adapter "65541 llvmpipe .*" lacks shader-f16; install mesa-vulkan-drivers/,
  );
  assert.match(
    webGpuTestRule({ ...gpu, shaderF16: false }).ignored!,
    /hardware adapter "4318 NVIDIA H100" lacks shader-f16/,
  );
  assert.match(
    webGpuTestRule({ description: "SwiftShader", isFallback: true, shaderF16: true }).ignored!,
    /"SwiftShader" is not lavapipe/,
  );
  assert.match(webGpuTestRule(undefined).ignored!, /^no WebGPU adapter/);
});
