/**
 * diffusers' `QwenImageTransformer2DModel` (the dual-stream MMDiT of Qwen-Image) as one ONNX graph
 * with the `transformer` interface of docs/onnx-interfaces.md: `hidden_states [B, N, 64]` (2×2-packed
 * latents of an `img_height × img_width` token grid), `timestep [B]` (= σ), `encoder_hidden_states
 * [B, S, joint_attention_dim]` with `encoder_hidden_states_mask [B, S]` (int64, 1 = a real token),
 * `img_height`, `img_width` (int64 scalars) → `out_hidden_states [B, N, 64]` (the velocity). Weights
 * come from a {@linkcode WeightSource} under diffusers' parameter names.
 *
 * The forward is diffusers' for the base model (no `zero_cond_t`, no additional timestep condition,
 * no guidance embedding; the converter refuses those configs):
 *
 * - `img_in` on the packed latents; `txt_norm` (RMSNorm) then `txt_in` on the text features;
 * - timestep: sinusoids of σ (cos, then sin) scaled by 1000, `timestep_embedder` MLP → `temb`;
 * - 3-axis RoPE (complex, on interleaved pairs), angles `pos · θ^(−2j/d)` per axis with θ = 10000:
 *   image token (r, c) at (0, r − ⌈h/2⌉, c − ⌈w/2⌉) (diffusers' `scale_rope`: the grid centred on 0),
 *   text row i at (m + i, m + i, m + i) on all axes, m = max(⌊h/2⌋, ⌊w/2⌋);
 * - each block: per stream `Linear(SiLU(temb))` → shift, scale, gate ×2; LayerNorm (no affine) ·
 *   (1 + scale) + shift; joint attention over [text, image] (q/k/v with biases, RMSNorm q/k norms per
 *   stream, masked text keys), gated residuals; GELU-tanh MLPs per stream, gated residuals;
 * - `norm_out` (LayerNorm · (1 + scale) + shift from `Linear(SiLU(temb))`, scale first), `proj_out`.
 *
 * @module
 */
import { GraphBuilder, type WeightSource } from "../graph/onnx_builder.ts";
import { rotateComplexPairs } from "./complex_rope.ts";

/** The structure of a `QwenImageTransformer2DModel` (its config fields). */
export interface QwenImageTransformerConfig {
  patchSize: number;
  inChannels: number;
  outChannels: number;
  layers: number;
  headDim: number;
  heads: number;
  jointAttentionDim: number;
  axesDims: number[];
}

/** diffusers' constants of the model: RoPE base, timestep sinusoid width and scale, norm eps. */
const ROPE_THETA = 10000;
const T_FREQ = 256;
const T_SCALE = 1000;
const EPS = 1e-6;

/** Builds the transformer graph. */
export function qwenImageTransformer(
  config: QwenImageTransformerConfig,
  weights: WeightSource,
): GraphBuilder {
  const g = new GraphBuilder("transformer", 0, undefined, weights);
  const { heads, headDim: d, jointAttentionDim: txtDim } = config;
  const dim = heads * d;
  const outDim = config.patchSize * config.patchSize * config.outChannels;
  const i64 = (v: number[], dims?: number[]) => g.int64(v, dims);
  const scalar = (v: number) => g.constant([v], [1]);

  g.input("hidden_states", "float32", ["batch_size", "image_seq_len", config.inChannels]);
  g.input("timestep", "float32", ["batch_size"]);
  g.input("encoder_hidden_states", "float32", ["batch_size", "text_seq_len", txtDim]);
  g.input("encoder_hidden_states_mask", "int64", ["batch_size", "text_seq_len"]);
  g.input("img_height", "int64", []);
  g.input("img_width", "int64", []);

  const param = (name: string, dims: number[]) => g.param(name, dims, () => []);
  const linear = (module: string, x: string, inF: number, outF: number) =>
    g.op("Add", [g.linear(module, x, inF, outF, 0), param(`${module}.bias`, [outF])]);
  const gemm = (module: string, x: string, inF: number, outF: number) =>
    g.gemm(module, x, inF, outF, 0);
  const silu = (x: string) => g.op("Mul", [x, g.op("Sigmoid", [x])]);
  // diffusers' RMSNorm: x · rsqrt(mean(x²) + eps) · weight.
  const rmsNorm = (weight: string, x: string, width: number) =>
    g.op("Mul", [
      g.op("Div", [
        x,
        g.op("Sqrt", [
          g.op("Add", [
            g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 }),
            scalar(EPS),
          ]),
        ]),
      ]),
      param(weight, [width]),
    ]);
  const layerNorm = (x: string) =>
    g.op("LayerNormalization", [
      x,
      g.constant(new Float32Array(dim).fill(1), [dim]),
      g.constant(new Float32Array(dim), [dim]),
    ], { axis: -1, epsilon: EPS });
  // torch's GELU with approximate="tanh": ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
  const geluTanh = (x: string) =>
    g.op("Mul", [
      g.op("Mul", [x, scalar(0.5)]),
      g.op("Add", [
        scalar(1),
        g.op("Tanh", [
          g.op("Mul", [
            g.op("Add", [
              x,
              g.op("Mul", [g.op("Mul", [g.op("Mul", [x, x]), x]), scalar(0.044715)]),
            ]),
            scalar(Math.sqrt(2 / Math.PI)),
          ]),
        ]),
      ]),
    ]);
  const vec = (...scalars: string[]) =>
    g.op("Concat", scalars.map((s) => g.op("Unsqueeze", [s, i64([0])])), { axis: 0 });

  // Timestep embedding: sinusoids of σ·1000 (cos, then sin), MLP 256 → dim → dim.
  const half = T_FREQ / 2;
  const freqs = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    freqs[j] = Math.exp(Math.fround(Math.fround(-Math.log(10000)) * j) / half);
  }
  const args = g.op("Mul", [
    g.op("Mul", [g.op("Unsqueeze", ["timestep", i64([1])]), g.constant(freqs, [1, half])]),
    scalar(T_SCALE),
  ]);
  const tFreq = g.op("Concat", [g.op("Cos", [args]), g.op("Sin", [args])], { axis: -1 });
  const temb = gemm(
    "time_text_embed.timestep_embedder.linear_2",
    silu(gemm("time_text_embed.timestep_embedder.linear_1", tFreq, T_FREQ, dim)),
    dim,
    dim,
  );
  const tembAct = silu(temb);

  // RoPE positions → cos/sin `[1, L, 1, d/2]`: per axis, angles pos · θ^(−2j/dₐ) in float32.
  const invFreqs = config.axesDims.map((ad) => {
    const inv = new Float32Array(ad / 2);
    for (let j = 0; j < ad / 2; j++) {
      inv[j] = Math.fround(1 / Math.fround(ROPE_THETA ** Math.fround((2 * j) / ad)));
    }
    return g.constant(inv, [1, ad / 2]);
  });
  const rope = (positions: string[]) => {
    const angles = g.op(
      "Concat",
      positions.map((p, a) =>
        g.op("Mul", [
          g.op("Unsqueeze", [g.op("Cast", [p], { to: 1 }), i64([1])]),
          invFreqs[a],
        ])
      ),
      { axis: -1 },
    );
    const at = (kind: "Cos" | "Sin") => g.op("Unsqueeze", [g.op(kind, [angles]), i64([0, 2])]);
    return { cos: at("Cos"), sin: at("Sin") };
  };
  const h = "img_height", w = "img_width";
  const two = i64([2], []);
  const tokens = g.op("Mul", [h, w]);
  const cells = g.op("Range", [i64([0], []), tokens, i64([1], [])]);
  const centred = (index: string, side: string) =>
    g.op("Sub", [index, g.op("Sub", [side, g.op("Div", [side, two])])]);
  const imageRope = rope([
    g.op("Expand", [i64([0], []), vec(tokens)]),
    centred(g.op("Div", [cells, w]), h),
    centred(g.op("Mod", [cells, w]), w),
  ]);
  const textLen = g.op("Gather", [g.op("Shape", ["encoder_hidden_states"]), i64([1], [])]);
  const textStart = g.op("Max", [g.op("Div", [h, two]), g.op("Div", [w, two])]);
  const textPos = g.op("Range", [textStart, g.op("Add", [textStart, textLen]), i64([1], [])]);
  const textRope = rope([textPos, textPos, textPos]);

  const rotate = (x: string, r: { cos: string; sin: string }) =>
    rotateComplexPairs(g, x, r, heads, d, [0, 0, heads, d]);

  // Joint attention keys: the text rows where the mask is 1, then every image token; a masked key
  // gets −∞ before the softmax (torch's boolean SDPA mask).
  const batch = g.op("Gather", [g.op("Shape", ["hidden_states"]), i64([0], [])]);
  const keyMask = g.op("Concat", [
    g.op("Cast", ["encoder_hidden_states_mask"], { to: 9 }),
    g.op("Cast", [g.op("Expand", [i64([1], []), vec(batch, tokens)])], { to: 9 }),
  ], { axis: 1 });
  const bias = g.op("Unsqueeze", [
    g.op("Where", [keyMask, scalar(0), scalar(-Infinity)]),
    i64([1, 2]),
  ]);

  const attention = (module: string, img: string, txt: string) => {
    const split = (t: string) => g.op("Reshape", [t, i64([0, 0, heads, d])]);
    const proj = (name: string, x: string, inF: number) =>
      split(linear(`${module}.${name}`, x, inF, dim));
    const normed = (name: string, norm: string, x: string, r: { cos: string; sin: string }) =>
      rotate(rmsNorm(`${module}.${norm}.weight`, proj(name, x, dim), d), r);
    const joint = (t: string, i: string) => g.op("Concat", [t, i], { axis: 1 });
    const headsFirst = (t: string) => g.op("Transpose", [t], { perm: [0, 2, 1, 3] });
    const q = headsFirst(joint(
      normed("add_q_proj", "norm_added_q", txt, textRope),
      normed("to_q", "norm_q", img, imageRope),
    ));
    const k = headsFirst(joint(
      normed("add_k_proj", "norm_added_k", txt, textRope),
      normed("to_k", "norm_k", img, imageRope),
    ));
    const v = headsFirst(joint(proj("add_v_proj", txt, dim), proj("to_v", img, dim)));
    const scores = g.op("Add", [
      g.op("Mul", [
        g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]),
        scalar(1 / Math.sqrt(d)),
      ]),
      bias,
    ]);
    const mixed = g.op("Reshape", [
      g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), v])], {
        perm: [0, 2, 1, 3],
      }),
      i64([0, 0, dim]),
    ]);
    const txtOut = g.op("Slice", [mixed, i64([0]), vec(textLen), i64([1])]);
    const imgOut = g.op("Slice", [mixed, vec(textLen), i64([Number.MAX_SAFE_INTEGER]), i64([1])]);
    return {
      img: linear(`${module}.to_out.0`, imgOut, dim, dim),
      txt: linear(`${module}.to_add_out`, txtOut, dim, dim),
    };
  };

  // Six `[B, 1, dim]` modulation chunks of one stream: shift, scale, gate (attention), then (MLP).
  const modulation = (module: string) => {
    const mod = gemm(`${module}.1`, tembAct, dim, 6 * dim);
    return [0, 1, 2, 3, 4, 5].map((k) =>
      g.op("Unsqueeze", [
        g.op("Slice", [mod, i64([k * dim]), i64([(k + 1) * dim]), i64([1])]),
        i64([1]),
      ])
    );
  };
  const modulate = (x: string, shift: string, scale: string) =>
    g.op("Add", [g.op("Mul", [layerNorm(x), g.op("Add", [scale, scalar(1)])]), shift]);
  const mlp = (module: string, x: string) =>
    linear(
      `${module}.net.2`,
      geluTanh(linear(`${module}.net.0.proj`, x, dim, 4 * dim)),
      4 * dim,
      dim,
    );

  const block = (module: string, img: string, txt: string) => {
    const im = modulation(`${module}.img_mod`);
    const tm = modulation(`${module}.txt_mod`);
    const attn = attention(
      `${module}.attn`,
      modulate(img, im[0], im[1]),
      modulate(txt, tm[0], tm[1]),
    );
    img = g.op("Add", [img, g.op("Mul", [im[2], attn.img])]);
    txt = g.op("Add", [txt, g.op("Mul", [tm[2], attn.txt])]);
    img = g.op("Add", [
      img,
      g.op("Mul", [im[5], mlp(`${module}.img_mlp`, modulate(img, im[3], im[4]))]),
    ]);
    txt = g.op("Add", [
      txt,
      g.op("Mul", [tm[5], mlp(`${module}.txt_mlp`, modulate(txt, tm[3], tm[4]))]),
    ]);
    return { img, txt };
  };

  let img = linear("img_in", "hidden_states", config.inChannels, dim);
  let txt = linear(
    "txt_in",
    rmsNorm("txt_norm.weight", "encoder_hidden_states", txtDim),
    txtDim,
    dim,
  );
  for (let i = 0; i < config.layers; i++) {
    ({ img, txt } = block(`transformer_blocks.${i}`, img, txt));
  }

  // norm_out: LayerNorm · (1 + scale) + shift, scale first in `Linear(SiLU(temb))`.
  const emb = gemm("norm_out.linear", tembAct, dim, 2 * dim);
  const chunk = (k: number) =>
    g.op("Unsqueeze", [
      g.op("Slice", [emb, i64([k * dim]), i64([(k + 1) * dim]), i64([1])]),
      i64([1]),
    ]);
  const out = linear("proj_out", modulate(img, chunk(1), chunk(0)), dim, outDim);
  g.op("Identity", [out], {}, "out_hidden_states");
  g.output("out_hidden_states", "float32", ["batch_size", "image_seq_len", outDim]);
  return g;
}
