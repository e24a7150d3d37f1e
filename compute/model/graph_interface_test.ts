import assert from "node:assert/strict";
import type { Session } from "../backends/backend.ts";
import { InterfaceMismatchError } from "../errors.ts";
import { axisStatement, checkAgreement, configStatement } from "./graph_interface.ts";

const session = (shape: (number | string)[]): Session => ({
  inputs: [{ name: "sample", type: "float32", shape }],
  outputs: [],
  run: () => Promise.resolve({}),
  release: () => Promise.resolve(),
});

Deno.test("checkAgreement: symbolic axes and absent fields state nothing; two numbers must agree", () => {
  const config = { in_channels: 4 };
  checkAgreement("the latent channels", [
    configStatement("unet/config.json", config, "in_channels"),
    configStatement("unet/config.json", config, "out_channels"),
    axisStatement("unet/model.onnx", session(["batch", "channels", "h", "w"]), "sample", 1),
    axisStatement("unet/model.onnx", session(["batch", 4, "h", "w"]), "sample", 1),
  ]);
  assert.throws(
    () =>
      checkAgreement("the latent channels", [
        configStatement("unet/config.json", config, "in_channels"),
        axisStatement("vae_decoder/model.onnx", session(["batch", 16, "h", "w"]), "sample", 1),
      ]),
    (e) =>
      e instanceof InterfaceMismatchError &&
      e.message ===
        "The model's parts do not fit together: the latent channels differ (unet/config.json in_channels = 4, vae_decoder/model.onnx sample[1] = 16)",
  );
});
