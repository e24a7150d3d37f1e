/**
 * `deno task convert SRC --out DIR [--dtype fp32|fp16|q8|q4] [--config DIR]`: converts a diffusers pipeline
 * folder, one component folder or a single-file `.safetensors` checkpoint (its family's known
 * configs, or those of the `--config` folder) into ONNX graphs in our interfaces (see
 * `convert.ts`). Bad input prints one line and exits 1.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ModelLoadError } from "../errors.ts";
import { convert } from "./convert.ts";

const USAGE =
  "usage: deno task convert SRC --out DIR [--dtype fp32|fp16|q8|q4] [--config DIFFUSERS_DIR]  (SRC: a diffusers pipeline folder, a component folder, or a single-file SD 1.x/2.x/SDXL .safetensors checkpoint, converted with its family's known configs unless --config names a diffusers folder to take them from; or an ONNX model folder, re-written at --dtype q8 or q4)";

let args;
try {
  args = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      out: { type: "string" },
      dtype: { type: "string", default: "fp32" },
      config: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
} catch (e) {
  console.error(`convert: ${(e as Error).message}\n${USAGE}`);
  Deno.exit(1);
}
const { values, positionals } = args;
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
if (positionals.length !== 1 || !values.out) {
  console.error(USAGE);
  Deno.exit(1);
}
try {
  const started = performance.now();
  const written = await convert(positionals[0], values.out, {
    dtype: values.dtype,
    config: values.config,
  });
  const graphs = written.filter((p) => p.endsWith("model.onnx")).map((p) => p.split("/")[0]);
  console.log(
    `converted ${positionals[0]} → ${values.out} (${graphs.join(", ")}) in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
} catch (e) {
  if (!(e instanceof ModelLoadError)) throw e;
  console.error(`convert: ${e.message}`);
  Deno.exit(1);
}
