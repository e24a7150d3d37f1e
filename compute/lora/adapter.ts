/**
 * LoRA adapters in the three formats people publish, read into one form: a list of layers, each a
 * pair of low-rank factors `B·A` for one module of one model component, with its `alpha / r`.
 *
 * - **PEFT folder**: `adapter_config.json` (`r`, `lora_alpha`, `rank_pattern`, `alpha_pattern`,
 *   `use_rslora`) + `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight`
 *   (A, `[r, in]`) and `lora_B.weight` (B, `[out, r]`).
 * - **diffusers single file**: `unet.<module>.lora_A.weight` / `lora_B.weight` (also
 *   `transformer.`, `text_encoder.`, `text_encoder_2.`), optional `<module>.alpha`.
 * - **Kohya single file**: `lora_unet_<module with _>.lora_down.weight` (A), `.lora_up.weight`
 *   (B), `.alpha`; `lora_te_`/`lora_te1_`/`lora_te2_` for the text encoders. Module paths are
 *   flattened with `_`, so they are matched against the graph's flattened names.
 *
 * Conv layers carry `[r, in, kh, kw]` and `[out, r, 1, 1]` factors.
 *
 * @module
 */
import { InvalidInputError } from "../errors.ts";
import { parseSafetensors, type SafetensorsTensor, tensorToFloat32 } from "./safetensors.ts";

/** Which graph a layer patches: the denoiser (UNet or transformer) or a text encoder. */
export type LoraComponent = "denoiser" | "text_encoder" | "text_encoder_2";

/** A factor's values and dims. */
export interface Factor {
  data: Float32Array;
  dims: number[];
}

/** One adapted module: `ΔW = multiplier · B·A`. */
export interface LoraLayer {
  component: LoraComponent;
  /** Dotted module path, or (Kohya) the path with every `.` as `_`. */
  module: string;
  flat: boolean;
  /** A (`lora_A` / `lora_down`): `[r, in]` or `[r, in, kh, kw]`. */
  down: Factor;
  /** B (`lora_B` / `lora_up`): `[out, r]` or `[out, r, 1, 1]`. */
  up: Factor;
  /** `alpha / r` (`alpha / √r` with rsLoRA). */
  multiplier: number;
}

/** The published format an adapter came in. */
export type LoraFormat = "peft" | "diffusers" | "kohya";

/** A parsed adapter. */
export interface LoraAdapter {
  /** Where it came from, for messages. */
  source: string;
  format: LoraFormat;
  layers: LoraLayer[];
}

/** An adapter that cannot be used (the caller's input: HTTP 400). */
export class LoraError extends InvalidInputError {
  override name = "LoraError";
  override param = "lora";
}

/** The subset of PEFT's `LoraConfig` that changes the weights. */
interface PeftConfig {
  r?: number;
  lora_alpha?: number;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  use_rslora?: boolean;
  use_dora?: boolean;
}

/** Recognised key prefixes → component (and whether module names are flattened). */
const PREFIXES: readonly [string, LoraComponent, boolean][] = [
  ["lora_unet_", "denoiser", true],
  ["lora_transformer_", "denoiser", true],
  ["lora_te1_", "text_encoder", true],
  ["lora_te2_", "text_encoder_2", true],
  ["lora_te_", "text_encoder", true],
  ["base_model.model.", "denoiser", false],
  ["unet.", "denoiser", false],
  ["transformer.", "denoiser", false],
  ["diffusion_model.", "denoiser", false],
  ["text_encoder_2.", "text_encoder_2", false],
  ["text_encoder.", "text_encoder", false],
];

/** Factor suffixes: which factor a key is. */
const SUFFIXES: readonly [string, "down" | "up" | "alpha"][] = [
  [".lora_A.weight", "down"],
  [".lora_B.weight", "up"],
  [".lora_A.default.weight", "down"],
  [".lora_B.default.weight", "up"],
  [".lora_down.weight", "down"],
  [".lora_up.weight", "up"],
  [".alpha", "alpha"],
];

/** Keys of adapter kinds that are not plain LoRA, with what they are. */
const UNSUPPORTED: readonly [RegExp, string][] = [
  [/\.dora_scale$|\.lora_magnitude_vector/, "DoRA"],
  [/\.hada_w[12]_[ab]$/, "LoHa (LyCORIS)"],
  [/\.lokr_w[12](_[ab])?$/, "LoKr (LyCORIS)"],
  [/\.diff(_b)?$/, "full weight differences"],
];

/**
 * Reads an adapter from a safetensors file's bytes and, for a PEFT folder, the text of its
 * `adapter_config.json`. Throws {@linkcode LoraError} for anything unusable.
 */
export function parseAdapter(
  weights: Uint8Array,
  source: string,
  configText?: string,
): LoraAdapter {
  const config = configText === undefined ? undefined : parseConfig(configText, source);
  if (config?.use_dora) throw new LoraError(`${source}: DoRA adapters are not supported`);
  const file = parseSafetensors(weights, source);
  const groups = new Map<string, {
    component: LoraComponent;
    module: string;
    flat: boolean;
    down?: SafetensorsTensor;
    up?: SafetensorsTensor;
    alpha?: SafetensorsTensor;
  }>();
  const unknown: string[] = [];
  for (const [key, tensor] of file.tensors) {
    for (const [pattern, kind] of UNSUPPORTED) {
      if (pattern.test(key)) {
        throw new LoraError(`${source}: ${kind} adapters are not supported (key '${key}')`);
      }
    }
    const suffix = SUFFIXES.find(([s]) => key.endsWith(s));
    const prefix = PREFIXES.find(([p]) => key.startsWith(p));
    if (!suffix || !prefix) {
      unknown.push(key);
      continue;
    }
    let module = key.slice(prefix[0].length, key.length - suffix[0].length);
    let component = prefix[1];
    // PEFT saves whatever model it wrapped: a pipeline component prefix may follow.
    if (prefix[0] === "base_model.model.") {
      const inner = PREFIXES.find(([p, , flat]) =>
        !flat && p !== prefix[0] && module.startsWith(p)
      );
      if (inner) [module, component] = [module.slice(inner[0].length), inner[1]];
      else if (module.startsWith("text_model.")) component = "text_encoder";
    }
    const id = `${component}:${module}`;
    const group = groups.get(id) ?? { component, module, flat: prefix[2] };
    group[suffix[1]] = tensor;
    groups.set(id, group);
  }
  if (unknown.length > 0) {
    throw new LoraError(
      `${source}: ${unknown.length} key(s) are not LoRA factors of a known format, e.g. ${
        unknown.slice(0, 3).map((k) => `'${k}'`).join(", ")
      } (expected PEFT/diffusers lora_A/lora_B or Kohya lora_down/lora_up keys)`,
    );
  }
  if (groups.size === 0) throw new LoraError(`${source}: the file holds no LoRA weights`);
  const layers = [...groups.values()].map((g): LoraLayer => {
    const where = `${source}: ${g.module}`;
    if (!g.down || !g.up) {
      throw new LoraError(`${where} has ${g.down ? "lora_A/down" : "lora_B/up"} but not the other`);
    }
    const down = factor(g.down, where, "A");
    const up = factor(g.up, where, "B");
    const rank = down.dims[0];
    if (up.dims[1] !== rank || (up.dims.length === 4 && (up.dims[2] !== 1 || up.dims[3] !== 1))) {
      throw new LoraError(
        `${where}: shapes do not compose: A is [${down.dims}] (rank ${rank}), B is [${up.dims}]`,
      );
    }
    const inFlat = down.dims.slice(1).reduce((a, b) => a * b, 1);
    if (rank < 1 || rank > Math.max(up.dims[0], inFlat)) {
      throw new LoraError(
        `${where}: rank ${rank} makes no sense for a [${up.dims[0]}, ${inFlat}] weight`,
      );
    }
    const multiplier = multiplierOf(g, rank, config, where);
    return { component: g.component, module: g.module, flat: g.flat, down, up, multiplier };
  });
  const format: LoraFormat = config ? "peft" : layers.some((l) => l.flat) ? "kohya" : "diffusers";
  return { source, format, layers };
}

function parseConfig(text: string, source: string): PeftConfig {
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new LoraError(`${source}/adapter_config.json is not JSON: ${(e as Error).message}`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new LoraError(`${source}/adapter_config.json is not a JSON object`);
  }
  const c = config as PeftConfig & { peft_type?: unknown };
  if (c.peft_type !== undefined && c.peft_type !== "LORA") {
    throw new LoraError(`${source}: peft_type '${c.peft_type}' is not supported (only LORA)`);
  }
  return c;
}

function factor(t: SafetensorsTensor, where: string, which: string): Factor {
  if (t.shape.length !== 2 && t.shape.length !== 4) {
    throw new LoraError(`${where}: factor ${which} has shape [${t.shape}], expected 2-D or 4-D`);
  }
  return { data: tensorToFloat32(t), dims: t.shape };
}

/** PEFT patterns match a module path or one of its dotted suffixes. */
function patternValue(
  patterns: Record<string, number> | undefined,
  module: string,
): number | undefined {
  for (const [pattern, value] of Object.entries(patterns ?? {})) {
    if (module === pattern || module.endsWith(`.${pattern}`)) return value;
  }
  return undefined;
}

function multiplierOf(
  g: { module: string; alpha?: SafetensorsTensor },
  rank: number,
  config: PeftConfig | undefined,
  where: string,
): number {
  let alpha = rank;
  let r = rank;
  if (g.alpha) {
    const values = tensorToFloat32(g.alpha);
    if (values.length !== 1) throw new LoraError(`${where}: alpha is not a scalar`);
    alpha = values[0];
  } else if (config) {
    r = patternValue(config.rank_pattern, g.module) ?? config.r ?? rank;
    alpha = patternValue(config.alpha_pattern, g.module) ?? config.lora_alpha ?? r;
    if (r !== rank) {
      throw new LoraError(
        `${where}: adapter_config.json says r=${r}, but the factors have rank ${rank}`,
      );
    }
  }
  if (!Number.isFinite(alpha) || alpha <= 0) {
    throw new LoraError(`${where}: alpha ${alpha} makes no sense (expected a positive number)`);
  }
  return config?.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
}
