/**
 * diffusers' `AutoencoderKLQwenImage` (the causal 3-D VAE of Qwen-Image) on one frame, as the
 * `vae_decoder` and `vae_encoder` graphs of docs/onnx-interfaces.md: `latent_sample [B, z, 1, h, w]`
 * → `sample [B, 3, 1, 8h, 8w]` (clamped to [−1, 1], as `decode` returns it), and `sample
 * [B, 3, 1, H, W]` → `latent_parameters [B, 2z, 1, H/8, W/8]` (mean, then log-variance). Weights
 * come from a {@linkcode WeightSource} under diffusers' parameter names.
 *
 * What diffusers computes for a single frame (its first chunk, every feature cache empty):
 *
 * - a causal 3-D convolution pads two zero frames before the frame, so only its last temporal
 *   kernel slice touches the input: a 2-D convolution with `weight[:, :, kt − 1]`;
 * - `upsample3d`/`downsample3d` skip their `time_conv` on the first chunk (it only fills the
 *   cache), so they are the 2-D `upsample2d`/`downsample2d` and `time_conv` weights go unused;
 * - `QwenImageRMS_norm`: `F.normalize` over channels (x / max(‖x‖, 1e−12)) · √C · gamma;
 * - resampling: nearest ×2 then a 3×3 conv halving the channels; or zero-pad right and bottom by
 *   one then a stride-2 3×3 conv;
 * - the middle block's attention: one head over the pixels, q/k/v from one 1×1 conv.
 *
 * @module
 */
import { GraphBuilder, type WeightSource } from "../graph/onnx_builder.ts";

/** The structure of an `AutoencoderKLQwenImage` (its config fields). */
export interface QwenImageVaeConfig {
  baseDim: number;
  zDim: number;
  dimMult: number[];
  numResBlocks: number;
  /** Scales (1, ½, ¼, …) after whose residual blocks the encoder has an attention block. */
  attnScales: number[];
  inputChannels: number;
}

/** Shared layers of the decoder and encoder graphs over one builder. */
function layers(g: GraphBuilder) {
  const i64 = (v: number[], dims?: number[]) => g.int64(v, dims);
  const scalar = (v: number) => g.constant([v], [1]);
  const silu = (x: string) => g.op("Mul", [x, g.op("Sigmoid", [x])]);

  /** A 2-D conv with bias (causal 3-D ones get their last temporal slice: `lastFrameSource`). */
  const conv = (
    module: string,
    x: string,
    cin: number,
    cout: number,
    k: number,
    opts: { stride?: number; pads?: number[] } = {},
  ) => {
    const pad = (k - 1) / 2;
    return g.conv(module, x, [cout, cin, k, k], 0, 0, {
      pads: opts.pads ?? [pad, pad, pad, pad],
      strides: [opts.stride ?? 1, opts.stride ?? 1],
      kernel_shape: [k, k],
    });
  };
  /** `QwenImageRMS_norm` on `[B, C, H, W]` (gamma stored `[C, 1, 1(, 1)]`). */
  const rmsNorm = (module: string, x: string, channels: number, gammaDims: number[]) => {
    const norm = g.op("Sqrt", [
      g.op("ReduceSum", [g.op("Mul", [x, x]), i64([1])], { keepdims: 1 }),
    ]);
    const normed = g.op("Div", [x, g.op("Max", [norm, scalar(1e-12)])]);
    const gamma = g.op("Reshape", [
      g.param(`${module}.gamma`, gammaDims, () => []),
      i64([channels, 1, 1]),
    ]);
    return g.op("Mul", [g.op("Mul", [normed, scalar(Math.sqrt(channels))]), gamma]);
  };
  const residual = (module: string, x: string, cin: number, cout: number) => {
    const skip = cin === cout ? x : conv(`${module}.conv_shortcut`, x, cin, cout, 1);
    let h = conv(
      `${module}.conv1`,
      silu(rmsNorm(`${module}.norm1`, x, cin, [cin, 1, 1, 1])),
      cin,
      cout,
      3,
    );
    h = conv(
      `${module}.conv2`,
      silu(rmsNorm(`${module}.norm2`, h, cout, [cout, 1, 1, 1])),
      cout,
      cout,
      3,
    );
    return g.op("Add", [h, skip]);
  };
  const attention = (module: string, x: string, c: number) => {
    const qkv = conv(`${module}.to_qkv`, rmsNorm(`${module}.norm`, x, c, [c, 1, 1]), c, 3 * c, 1);
    // [B, 3C, H, W] → [B, HW, 3C] → q, k, v `[B, HW, C]`.
    const rows = g.op("Transpose", [g.op("Reshape", [qkv, i64([0, 3 * c, -1])])], {
      perm: [0, 2, 1],
    });
    const [q, k, v] = [0, 1, 2].map((i) =>
      g.op("Slice", [rows, i64([i * c]), i64([(i + 1) * c]), i64([2])])
    );
    const scores = g.op("Mul", [
      g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 2, 1] })]),
      scalar(1 / Math.sqrt(c)),
    ]);
    const mixed = g.op("MatMul", [g.op("Softmax", [scores], { axis: -1 }), v]);
    const back = g.op("Reshape", [
      g.op("Transpose", [mixed], { perm: [0, 2, 1] }),
      g.op("Shape", [x]),
    ]);
    return g.op("Add", [conv(`${module}.proj`, back, c, c, 1), x]);
  };
  const mid = (module: string, x: string, c: number) => {
    let h = residual(`${module}.resnets.0`, x, c, c);
    h = attention(`${module}.attentions.0`, h, c);
    return residual(`${module}.resnets.1`, h, c, c);
  };
  return { i64, silu, conv, rmsNorm, residual, attention, mid };
}

/**
 * The builder's source with each causal 3-D conv weight (`[o, i, kt, k, k]` stored) cut to its last
 * temporal slice, the one a single frame meets; `temporal` maps those weights to their `kt`.
 */
function lastFrameSource(weights: WeightSource, temporal: (name: string) => number): WeightSource {
  return {
    output: weights.output,
    take(name, dims) {
      const kt = temporal(name);
      if (!kt) return weights.take(name, dims);
      const [o, i, kh, kw] = dims;
      const full = weights.take(name, [o, i, kt, kh, kw]);
      const plane = kh * kw, out = new Float32Array(o * i * plane);
      for (let r = 0; r < o * i; r++) {
        out.set(full.subarray((r * kt + kt - 1) * plane, (r * kt + kt) * plane), r * plane);
      }
      return out;
    },
  };
}

/** Conv weights of the 3-D modules: causal convs have a temporal axis (3 for 3×3×3, 1 for 1×1×1). */
const temporalOf = (name: string) =>
  !name.endsWith(".weight") || /(resample\.1|to_qkv|proj)\.weight$/.test(name)
    ? 0
    : /conv_shortcut|quant_conv/.test(name)
    ? 1
    : 3;

/** The decoder graph: `post_quant_conv`, `decoder`, clamp to [−1, 1]. */
export function qwenImageVaeDecoder(
  config: QwenImageVaeConfig,
  weights: WeightSource,
): GraphBuilder {
  const g = new GraphBuilder("vae_decoder", 0, undefined, lastFrameSource(weights, temporalOf));
  const L = layers(g);
  const { zDim: z, baseDim, dimMult, numResBlocks } = config;
  g.input("latent_sample", "float32", ["batch_size", z, 1, "latent_height", "latent_width"]);
  const dims = [dimMult[dimMult.length - 1], ...dimMult.toReversed()].map((m) => baseDim * m);

  let x = L.conv("post_quant_conv", g.op("Squeeze", ["latent_sample", L.i64([2])]), z, z, 1);
  x = L.conv("decoder.conv_in", x, z, dims[0], 3);
  x = L.mid("decoder.mid_block", x, dims[0]);
  let cin = dims[0];
  for (let i = 0; i < dimMult.length; i++) {
    const cout = dims[i + 1];
    for (let r = 0; r <= numResBlocks; r++) {
      x = L.residual(`decoder.up_blocks.${i}.resnets.${r}`, x, cin, cout);
      cin = cout;
    }
    if (i !== dimMult.length - 1) {
      const up = g.op("Resize", [x, "", g.constant([1, 1, 2, 2], [4])], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      });
      x = L.conv(`decoder.up_blocks.${i}.upsamplers.0.resample.1`, up, cout, cout / 2, 3);
      cin = cout / 2;
    }
  }
  x = L.silu(L.rmsNorm("decoder.norm_out", x, cin, [cin, 1, 1, 1]));
  x = L.conv("decoder.conv_out", x, cin, config.inputChannels, 3);
  const clamped = g.op("Clip", [x, g.constant([-1], []), g.constant([1], [])]);
  g.op("Unsqueeze", [clamped, L.i64([2])], {}, "sample");
  g.output("sample", "float32", [
    "batch_size",
    config.inputChannels,
    1,
    "latent_height * 8",
    "latent_width * 8",
  ]);
  return g;
}

/** The encoder graph: `encoder` on the frame, `quant_conv` → mean and log-variance. */
export function qwenImageVaeEncoder(
  config: QwenImageVaeConfig,
  weights: WeightSource,
): GraphBuilder {
  const g = new GraphBuilder("vae_encoder", 0, undefined, lastFrameSource(weights, temporalOf));
  const L = layers(g);
  const { zDim: z, baseDim, dimMult, numResBlocks } = config;
  g.input("sample", "float32", ["batch_size", config.inputChannels, 1, "height", "width"]);
  const dims = [1, ...dimMult].map((m) => baseDim * m);

  let x = L.conv(
    "encoder.conv_in",
    g.op("Squeeze", ["sample", L.i64([2])]),
    config.inputChannels,
    dims[0],
    3,
  );
  let index = 0, scale = 1;
  for (let i = 0; i < dimMult.length; i++) {
    let cin = dims[i];
    const cout = dims[i + 1];
    for (let r = 0; r < numResBlocks; r++) {
      x = L.residual(`encoder.down_blocks.${index++}`, x, cin, cout);
      if (config.attnScales.includes(scale)) {
        x = L.attention(`encoder.down_blocks.${index++}`, x, cout);
      }
      cin = cout;
    }
    if (i !== dimMult.length - 1) {
      x = L.conv(`encoder.down_blocks.${index++}.resample.1`, x, cout, cout, 3, {
        stride: 2,
        pads: [0, 0, 1, 1],
      });
      scale /= 2;
    }
  }
  const top = dims[dims.length - 1];
  x = L.mid("encoder.mid_block", x, top);
  x = L.silu(L.rmsNorm("encoder.norm_out", x, top, [top, 1, 1, 1]));
  x = L.conv("encoder.conv_out", x, top, 2 * z, 3);
  x = L.conv("quant_conv", x, 2 * z, 2 * z, 1);
  g.op("Unsqueeze", [x, L.i64([2])], {}, "latent_parameters");
  g.output("latent_parameters", "float32", [
    "batch_size",
    2 * z,
    1,
    "height / 8",
    "width / 8",
  ]);
  return g;
}
