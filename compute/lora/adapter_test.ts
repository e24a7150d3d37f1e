import assert from "node:assert/strict";
import { LoraError, parseAdapter } from "./adapter.ts";
import type { GraphWeights, WeightTarget } from "./graph_weights.ts";
import { planMerge } from "./merge.ts";
import { serializeSafetensors } from "./safetensors.ts";

const t = (shape: number[], fill = 0.1) => ({
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
});
const file = (tensors: Record<string, ReturnType<typeof t>>) => serializeSafetensors(tensors);
const M = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";

Deno.test("the three formats name components and compute alpha / r", () => {
  const peft = parseAdapter(
    file({
      [`base_model.model.${M}.lora_A.weight`]: t([4, 8]),
      [`base_model.model.${M}.lora_B.weight`]: t([16, 4]),
      [`base_model.model.text_model.encoder.layers.0.mlp.fc1.lora_A.weight`]: t([2, 8]),
      [`base_model.model.text_model.encoder.layers.0.mlp.fc1.lora_B.weight`]: t([8, 2]),
    }),
    "peft",
    JSON.stringify({ peft_type: "LORA", r: 4, lora_alpha: 8, rank_pattern: { fc1: 2 } }),
  );
  assert.equal(peft.format, "peft");
  assert.deepEqual(peft.layers.map((l) => [l.component, l.multiplier]), [
    ["denoiser", 2],
    ["text_encoder", 4],
  ]);
  const kohya = parseAdapter(
    file({
      "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": t([2, 8]),
      "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": t([8, 2]),
      "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": { shape: [], data: Float32Array.of(1) },
    }),
    "kohya",
  );
  assert.deepEqual(
    kohya.layers.map((l) => [kohya.format, l.component, l.module, l.flat, l.multiplier]),
    [["kohya", "text_encoder", "text_model_encoder_layers_0_mlp_fc1", true, 0.5]],
  );
  const rs = parseAdapter(
    file({ [`unet.${M}.lora_A.weight`]: t([4, 8]), [`unet.${M}.lora_B.weight`]: t([16, 4]) }),
    "rs",
    JSON.stringify({ r: 4, lora_alpha: 8, use_rslora: true }),
  );
  assert.equal(rs.layers[0].multiplier, 4);
});

Deno.test("unusable adapters are LoraErrors that say why", () => {
  const cases: [Uint8Array, string | undefined, RegExp][] = [
    [
      file({ "model.weight": t([2, 2]) }),
      undefined,
      /1 key\(s\) are not LoRA factors.*'model.weight'/,
    ],
    [
      file({ [`unet.${M}.lora_A.weight`]: t([4, 8]) }),
      undefined,
      /has lora_A\/down but not the other/,
    ],
    [
      file({ [`unet.${M}.lora_A.weight`]: t([4, 8]), [`unet.${M}.lora_B.weight`]: t([16, 2]) }),
      undefined,
      /shapes do not compose/,
    ],
    [
      file({ [`unet.${M}.lora_A.weight`]: t([64, 8]), [`unet.${M}.lora_B.weight`]: t([16, 64]) }),
      undefined,
      /rank 64 makes no sense/,
    ],
    [
      file({ [`unet.${M}.lora_A.weight`]: t([4, 8]), [`unet.${M}.lora_B.weight`]: t([16, 4]) }),
      JSON.stringify({ r: 8, lora_alpha: 8 }),
      /says r=8, but the factors have rank 4/,
    ],
    [
      file({ [`unet.${M}.lora_A.weight`]: t([4, 8]), [`unet.${M}.lora_B.weight`]: t([16, 4]) }),
      JSON.stringify({ r: 4, lora_alpha: -1 }),
      /alpha -1 makes no sense/,
    ],
    [file({ [`unet.${M}.dora_scale`]: t([1, 16]) }), undefined, /DoRA adapters are not supported/],
    [file({ [`lora_unet_x.hada_w1_a`]: t([1, 16]) }), undefined, /LoHa/],
    [file({}), undefined, /holds no LoRA weights/],
    [new Uint8Array(12), undefined, /not a valid safetensors file/],
    [file({}), "{", /adapter_config.json is not JSON/],
  ];
  for (const [bytes, config, message] of cases) {
    assert.throws(() => parseAdapter(bytes, "a", config), (e: Error) => {
      assert.ok(e instanceof LoraError || e.name === "SafetensorsError", e.name);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("factors that do not fit the model's weight are refused before anything is merged", () => {
  const adapter = parseAdapter(
    file({ [`unet.${M}.lora_A.weight`]: t([4, 8]), [`unet.${M}.lora_B.weight`]: t([16, 4]) }),
    "a",
  );
  const target: WeightTarget = {
    module: M,
    op: "MatMul",
    initializer: "onnx::MatMul_1",
    dims: [16, 32], // [in, out]: the model's to_q is 16 → 32
    transposed: true,
    dtype: "float32",
    location: { offset: 0, length: 16 * 32 * 4 },
  };
  const graph: GraphWeights = {
    byModule: new Map([[M, target]]),
    byFlatName: new Map(),
    externalFiles: [],
  };
  assert.throws(
    () => planMerge([{ adapter, scale: 1 }], new Map([["denoiser", graph]])),
    /A \[4,8\] and B \[16,4\] do not fit the model's weight \[32, 16\]/,
  );
});

Deno.test("Z-Image's fused qkv and out layers map onto diffusers' to_q, to_k, to_v and to_out.0", () => {
  const P = "layers.0.attention";
  const linear = (module: string, out: number, inF: number, offset: number): WeightTarget => ({
    module,
    op: "MatMul",
    initializer: module,
    dims: [inF, out],
    transposed: true,
    dtype: "float32",
    location: { offset, length: inF * out * 4 },
  });
  const targets = ["to_q", "to_k", "to_v", "to_out.0"].map((p, i) =>
    linear(`${P}.${p}`, 4, 4, i * 64)
  );
  const graph: GraphWeights = {
    byModule: new Map(targets.map((t) => [t.module, t])),
    byFlatName: new Map(),
    externalFiles: [],
  };
  const up = Float32Array.from({ length: 12 * 2 }, (_, i) => i);
  const adapter = parseAdapter(
    serializeSafetensors({
      [`diffusion_model.${P}.qkv.lora_A.weight`]: t([2, 4]),
      [`diffusion_model.${P}.qkv.lora_B.weight`]: { shape: [12, 2], data: up },
      [`diffusion_model.${P}.out.lora_A.weight`]: t([2, 4]),
      [`diffusion_model.${P}.out.lora_B.weight`]: t([4, 2]),
    }),
    "z",
  );
  const plan = planMerge([{ adapter, scale: 1 }], new Map([["denoiser", graph]])).get("denoiser")!;
  assert.equal(plan.size, 4);
  // to_k gets B's rows 4–7.
  assert.deepEqual([...plan.get(targets[1])![0].layer.up.data], [...up.subarray(8, 16)]);
  assert.equal(plan.get(targets[3])![0].layer.module, `${P}.out`);
});
