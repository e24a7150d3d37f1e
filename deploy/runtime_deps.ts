/**
 * The npm packages the server needs at run time, and only those: the container's dependency
 * layer is `deno install --frozen --entrypoint deploy/runtime_deps.ts`, so it holds no test or
 * build tools (openai, typescript, playwright-core, fast-check, …). It is never run;
 * `deploy/deploy_test.ts` fails when the server's module graph needs a package missing here.
 *
 * @module
 */
import "@hono/zod-openapi";
import "@huggingface/hub";
import "@huggingface/tokenizers";
import "hono";
import "onnx-proto"; // reading graphs: LoRA merges, attention fusion
import "onnxruntime-common";
import "onnxruntime-node";
import "onnxruntime-web"; // the WASM backend (its Node build: threads)
import "onnxruntime-web/webgpu";
import "prom-client";
import "sharp";
import "swagger-ui-dist";
import "yaml";
import "zod";
