/**
 * The server's command line as one declarative table: it parses arguments and `DENOISE_*`
 * environment variables (flag > environment > default), renders `--help`, and renders the
 * README's flag table (`deno task gen` writes it; a test fails on drift).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  CACHE_BACKENDS,
  type CacheBackend,
  type CacheConfig,
  CFG_MODES,
  type CfgMode,
  DEFAULT_LORA_LIMITS,
  DEFAULT_MAX_IMAGE_PIXELS,
  DEVICE_CHOICES,
  type DeviceChoice,
  MODEL_REGISTRY,
  parseCacheConfig,
  parseShardSize,
} from "../compute/mod.ts";

/** How a flag's text becomes a value. */
type Kind =
  | { type: "string" }
  | { type: "boolean" }
  | { type: "int"; min: number; max?: number }
  | { type: "number"; min: number; max?: number }
  | { type: "enum"; choices: readonly string[] }
  | { type: "list" };

/** One command-line flag. */
export interface Flag {
  name: string;
  kind: Kind;
  /** The default as text (parsed like a given value), shown in help. */
  default?: string;
  /** What help shows as the default when there is no fixed one. */
  defaultText?: string;
  metavar?: string;
  help: string;
  /** Other names (vLLM-Omni's). */
  aliases?: string[];
  /** Accepted for compatibility; has no effect. */
  ignored?: boolean;
  /** Environment variables read after `DENOISE_…` (PORT, as platforms set it). */
  alsoEnv?: string[];
}

const MB = 2 ** 20;

/** The registry's pixel limits in words: the larger ones by model, then everyone else's. */
function registryPixelLimits(): string {
  const side = (pixels: number) => `${Math.sqrt(pixels)}²`;
  // A model and its published exports share a name after the slash: said once. Largest first.
  const larger = new Set(
    MODEL_REGISTRY.filter((card) => card.maxImagePixels !== DEFAULT_MAX_IMAGE_PIXELS)
      .sort((a, b) => b.maxImagePixels - a.maxImagePixels)
      .map((card) => `${side(card.maxImagePixels)} ${card.id.split("/").at(-1)}`),
  );
  return `registry: ${[...larger, `else ${side(DEFAULT_MAX_IMAGE_PIXELS)}`].join(", ")}`;
}

/** Every flag of `deno task serve`. */
export const FLAGS: readonly Flag[] = [
  {
    name: "model",
    kind: { type: "string" },
    metavar: "ID|PATH",
    defaultText: "the embedded shapes-tiny model",
    help:
      "diffusers/Optimum ONNX model folder, a diffusers folder of .safetensors or a single-file .safetensors checkpoint (converted on first start into $DENOISE_CACHE), or a Hugging Face id (cache, then download); also positional",
  },
  {
    name: "model-config",
    kind: { type: "string" },
    metavar: "DIR",
    help:
      "for a single-file --model checkpoint: a diffusers folder of the same family whose configs, tokenizer and scheduler it is converted with instead of its family's known ones (the converter's --config)",
  },
  {
    name: "variant",
    kind: { type: "string" },
    metavar: "NAME",
    defaultText: "the layout's default (q4f16)",
    help:
      "for a published ONNX export holding several variants (webnn/sdxl-turbo's q4f16 and qdq_q4f16): which one is downloaded and served",
  },
  {
    name: "convert-dtype",
    kind: { type: "string" },
    default: "fp32",
    metavar: "DTYPE",
    help:
      "weight precision a converted --model is written in (deno task convert's --dtype; part of the cache key)",
  },
  {
    name: "host",
    kind: { type: "string" },
    default: "127.0.0.1",
    metavar: "HOST",
    help: "address to listen on (0.0.0.0 in a container)",
  },
  {
    name: "port",
    kind: { type: "int", min: 0, max: 65535 },
    default: "8000",
    metavar: "PORT",
    alsoEnv: ["PORT"],
    help: "port to listen on (0 picks a free one)",
  },
  {
    name: "device",
    kind: { type: "enum", choices: DEVICE_CHOICES },
    default: "auto",
    help: "auto (hardware WebGPU, else native CPU, else WASM), webgpu, cpu, wasm",
  },
  {
    name: "served-model-name",
    kind: { type: "string" },
    metavar: "NAME",
    defaultText: "the hub id or folder name",
    help:
      'the name clients send as "model" (without it, the --model value as given is accepted too)',
  },
  {
    name: "max-image-pixels",
    kind: { type: "int", min: 64 },
    metavar: "N",
    defaultText: "the model's limit",
    aliases: ["max-generated-image-size"],
    help: `largest width × height a request may ask for (${registryPixelLimits()})`,
  },
  {
    name: "api-key",
    kind: { type: "string" },
    metavar: "KEY",
    help: "require `Authorization: Bearer KEY` on /v1/* and /metrics",
  },
  {
    name: "public-metrics",
    kind: { type: "boolean" },
    help: "serve /metrics without the API key (for a scraper inside a trusted network)",
  },
  {
    name: "public-url",
    kind: { type: "string" },
    metavar: "URL",
    defaultText: "the listening address",
    help: "base of the image URLs answered for `response_format: url` (a proxy's address)",
  },
  {
    name: "max-batch-size",
    kind: { type: "int", min: 1, max: 256 },
    default: "8",
    metavar: "N",
    help: "most images denoised together in one network call",
  },
  {
    name: "batch-wait-ms",
    kind: { type: "number", min: 0, max: 10_000 },
    default: "30",
    metavar: "MS",
    help:
      "how long an idle engine waits for batch-mates of a first request, under concurrent load only (a lone client never waits)",
  },
  {
    name: "max-queue",
    kind: { type: "int", min: 0, max: 100_000 },
    default: "16",
    metavar: "N",
    help: "most requests waiting to start; more get 429 with retry-after",
  },
  {
    name: "request-timeout",
    kind: { type: "number", min: 0.001 },
    metavar: "S",
    defaultText: "none",
    help: "per-request limit in seconds; past it the request is cancelled and answered 504",
  },
  {
    name: "shutdown-timeout",
    kind: { type: "number", min: 0 },
    default: "30",
    metavar: "S",
    help: "on SIGTERM/SIGINT, seconds to finish accepted requests before answering the rest 503",
  },
  {
    name: "max-concurrent-requests",
    kind: { type: "int", min: 1 },
    default: "256",
    metavar: "N",
    help: "most generation requests received and handled at once; more get 429 (server_busy)",
  },
  {
    name: "body-timeout",
    kind: { type: "number", min: 0.001 },
    default: "30",
    metavar: "S",
    help: "seconds a request body may take to arrive; slower ones get 408",
  },
  {
    name: "header-timeout",
    kind: { type: "number", min: 0 },
    default: "10",
    metavar: "S",
    help:
      "seconds a client may take to send a request's head (slower ones get 408; one request per connection); 0: off",
  },
  {
    name: "exit-on-load-failure",
    kind: { type: "boolean" },
    help: "exit 1 when the model cannot load, instead of serving 503 (what a container wants)",
  },
  {
    name: "max-image-store-mb",
    kind: { type: "number", min: 0 },
    default: "512",
    metavar: "MB",
    help: "memory for images kept for `response_format: url` (oldest dropped; each kept 1 hour)",
  },
  {
    name: "image-store-dir",
    kind: { type: "string" },
    metavar: "DIR",
    defaultText: "none (in memory)",
    help: "keep `response_format: url` images in this directory (a volume replicas share)",
  },
  {
    name: "threads",
    kind: { type: "int", min: 1, max: 1024 },
    defaultText: "every core",
    metavar: "N",
    help: "threads of the native CPU and WASM backends",
  },
  {
    name: "disable-attention-fusion",
    kind: { type: "boolean" },
    help:
      "on cpu and webgpu, run attention as exported instead of fused into ONNX Runtime's MultiHeadAttention (more memory, slower); wasm never fuses",
  },
  {
    name: "shard-size",
    kind: { type: "string" },
    default: "auto",
    metavar: "BYTES|auto",
    help:
      "open a graph whose weights exceed this size (bytes, or with K/M/G) as consecutive shards, one session each; auto splits only what the backend requires (webgpu: 1G shards, and never over 4G; cpu and wasm: none)",
  },
  {
    name: "vae-use-slicing",
    kind: { type: "boolean" },
    ignored: true,
    defaultText: "always on",
    help:
      "accepted for vLLM-Omni's command line; no effect: a batch is always decoded one image at a time (the same bytes as whole, with less memory, and faster on cpu)",
  },
  {
    name: "vae-use-tiling",
    kind: { type: "boolean" },
    help:
      "decode large images in overlapping tiles with blended seams (much less memory; faint seams possible)",
  },
  {
    name: "cache-backend",
    kind: { type: "enum", choices: CACHE_BACKENDS },
    default: "none",
    help:
      "step caching: a step whose denoiser input barely changed skips the denoiser and reuses or extrapolates the last full steps' output (README: Step caching); a request's `cache` overrides it; off by default",
  },
  {
    name: "cache-config",
    kind: { type: "string" },
    metavar: "JSON",
    defaultText: "tea 1,2,2 +Taylor; dit 0.25,2,3",
    help:
      'settings of --cache-backend: {"threshold": 1, "warmup": 2, "max_cached": 2, "enable_taylorseer": true} (full steps first, most cached in a row, cached steps extrapolated; vLLM-Omni\'s key names too)',
  },
  {
    name: "cfg-parallel-size",
    kind: { type: "int", min: 1, max: 2 },
    default: "1",
    metavar: "N",
    help:
      "denoiser sessions running a call's rows at once (vLLM-Omni's CFG parallelism): 2 runs the guided and unguided branches at the same time on two sessions with half the threads each (on a 2-core CPU no faster than one batch: README, CFG execution and offloading)",
  },
  {
    name: "cfg-mode",
    kind: { type: "enum", choices: CFG_MODES },
    default: "auto",
    help:
      "how many of a step's rows (CFG branches, images, batched requests) one denoiser call runs: batch = all; sequential = one at a time (less memory); auto = calls of at most 2^18 latent values, at least one row (so Qwen-Image's two CFG rows one at a time above about 724²)",
  },
  {
    name: "enable-cpu-offload",
    kind: { type: "boolean" },
    defaultText: "auto",
    help:
      "the text encoders and the denoiser take turns in memory: each is closed while the other runs and reopened for its next run (vLLM-Omni's model-level offloading); automatic when their graphs exceed half of the machine's memory",
  },
  {
    name: "lora-root",
    kind: { type: "list" },
    metavar: "DIR",
    defaultText: "none (requests may not name paths)",
    help:
      "folder a request's `lora.local_path` may be read from (repeatable, or comma-separated); paths resolving outside every root are refused",
  },
  {
    name: "lora-modules",
    kind: { type: "list" },
    metavar: "NAME=PATH",
    defaultText: "none",
    help:
      "LoRA adapters by name (repeatable, or comma-separated), listed in `/v1/models`; a request may then give just `lora.name`, or the name as `model`",
  },
  {
    name: "max-cpu-loras",
    kind: { type: "int", min: 0, max: 1000 },
    default: String(DEFAULT_LORA_LIMITS.maxVariants),
    metavar: "N",
    help:
      "adapter sets kept merged in memory (least recently used dropped first); 0 merges per batch",
  },
  {
    name: "max-lora-cache-mb",
    kind: { type: "number", min: 0 },
    default: String(DEFAULT_LORA_LIMITS.cacheBytes / MB),
    metavar: "MB",
    help: "memory for merged adapter sets (each holds a copy of the graphs its adapters change)",
  },
  {
    name: "max-lora-file-mb",
    kind: { type: "number", min: 0 },
    default: String(DEFAULT_LORA_LIMITS.maxFileBytes / MB),
    metavar: "MB",
    help: "largest adapter file read",
  },
  {
    name: "allowed-origins",
    kind: { type: "list" },
    metavar: "LIST",
    defaultText: "none (CORS off)",
    help: "CORS: origins allowed to call the API, a JSON list or comma-separated; * for any",
  },
  {
    name: "allowed-methods",
    kind: { type: "list" },
    default: "*",
    metavar: "LIST",
    help: "CORS: allowed methods",
  },
  {
    name: "allowed-headers",
    kind: { type: "list" },
    default: "*",
    metavar: "LIST",
    help: "CORS: allowed request headers (* = whatever the browser asks for)",
  },
  {
    name: "allow-credentials",
    kind: { type: "boolean" },
    help: "CORS: allow credentials (needs explicit origins)",
  },
  {
    name: "log-level",
    kind: { type: "enum", choices: ["debug", "info", "warning", "error"] },
    default: "info",
    aliases: ["uvicorn-log-level"],
    help: "debug also logs each request's prompt and parameters",
  },
  {
    name: "log-format",
    kind: { type: "enum", choices: ["text", "json"] },
    default: "text",
    help: "text lines or JSON objects, each with a timestamp, level and request id",
  },
  {
    name: "omni",
    kind: { type: "boolean" },
    ignored: true,
    help: "accepted for vLLM-Omni's command line; no effect",
  },
  { name: "version", kind: { type: "boolean" }, help: "print the version and exit" },
  { name: "help", kind: { type: "boolean" }, help: "show this help and exit" },
];

/** A flag given a bad value, or an unknown flag: one line for the user, exit status 2. */
export class CliError extends Error {
  override name = "CliError";
}

/** The parsed command line, frozen: nothing changes it once parsed. */
export type ServerConfig = Readonly<ServerOptions>;

/** The parsed command line, field by field. */
export interface ServerOptions {
  model?: string;
  modelConfig?: string;
  variant?: string;
  convertDtype: string;
  host: string;
  port: number;
  device: DeviceChoice;
  servedModelName?: string;
  maxImagePixels?: number;
  apiKey?: string;
  publicMetrics: boolean;
  publicUrl?: string;
  maxBatchSize: number;
  batchWaitMs: number;
  maxQueue: number;
  requestTimeout?: number;
  shutdownTimeout: number;
  maxConcurrentRequests: number;
  bodyTimeout: number;
  headerTimeout: number;
  exitOnLoadFailure: boolean;
  maxImageStoreMb: number;
  imageStoreDir?: string;
  threads?: number;
  disableAttentionFusion: boolean;
  shardSize: string;
  vaeUseTiling: boolean;
  cacheBackend: CacheBackend;
  /** `--cache-config` as given; {@linkcode ServerOptions.cache} is what it means. */
  cacheConfig?: string;
  /** The step cache of requests that do not choose one; absent: none. */
  cache?: CacheConfig;
  cfgParallelSize: number;
  cfgMode: CfgMode;
  enableCpuOffload: boolean;
  loraRoot?: string[];
  loraModules?: string[];
  maxCpuLoras: number;
  maxLoraCacheMb: number;
  maxLoraFileMb: number;
  allowedOrigins?: string[];
  allowedMethods: string[];
  allowedHeaders: string[];
  allowCredentials: boolean;
  logLevel: "debug" | "info" | "warning" | "error";
  logFormat: "text" | "json";
  version: boolean;
  help: boolean;
}

const camel = (name: string) => name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
/** The environment variable of a flag: `DENOISE_` + its name in upper snake case. */
export const envName = (flag: Flag) => `DENOISE_${flag.name.toUpperCase().replaceAll("-", "_")}`;

function convert(flag: Flag, text: string, source: string): unknown {
  const bad = (expected: string) =>
    new CliError(`${source} must be ${expected}, got ${JSON.stringify(text)}`);
  const { kind } = flag;
  switch (kind.type) {
    case "string":
      return text;
    case "boolean": {
      const t = text.toLowerCase();
      if (["1", "true", "yes", "on"].includes(t)) return true;
      if (["0", "false", "no", "off", ""].includes(t)) return false;
      throw bad("true or false");
    }
    case "int":
    case "number": {
      const n = Number(text);
      const range = `${kind.min}${kind.max === undefined ? " or more" : `–${kind.max}`}`;
      if (
        text.trim() === "" || !Number.isFinite(n) || n < kind.min ||
        (kind.max !== undefined && n > kind.max) || (kind.type === "int" && !Number.isInteger(n))
      ) throw bad(`${kind.type === "int" ? "an integer" : "a number"} ${range}`);
      return n;
    }
    case "enum":
      if (!kind.choices.includes(text)) throw bad(`one of ${kind.choices.join(", ")}`);
      return text;
    case "list": {
      if (text.trim().startsWith("[")) {
        try {
          const list = JSON.parse(text);
          if (Array.isArray(list) && list.every((v) => typeof v === "string")) return list;
        } catch { /* reported below */ }
        throw bad("a JSON list of strings or comma-separated values");
      }
      return text.split(",").map((v) => v.trim()).filter(Boolean);
    }
  }
}

type Given = Record<string, string | string[] | boolean | undefined>;

/** The flags `args` give, aliases resolved, the positional model as `model`. */
function givenFlags(args: readonly string[]): Given {
  const aliases = new Map(
    FLAGS.flatMap((f) => (f.aliases ?? []).map((a) => [`--${a}`, `--${f.name}`] as const)),
  );
  const normalized = args.map((arg) => {
    const [name, ...rest] = arg.split("=");
    const target = aliases.get(name as `--${string}`);
    return target ? [target, ...rest].join("=") : arg;
  });
  let parsed;
  try {
    parsed = parseArgs({
      args: normalized,
      allowPositionals: true,
      options: Object.fromEntries(
        FLAGS.map((f) => [f.name, {
          type: f.kind.type === "boolean" ? "boolean" as const : "string" as const,
          // A list flag may be given several times; the values add up.
          multiple: f.kind.type === "list",
          ...(f.name === "help" ? { short: "h" } : {}),
        }]),
      ),
    });
  } catch (e) {
    throw new CliError((e as Error).message.split("\n")[0]);
  }
  if (parsed.positionals.length > 1) {
    throw new CliError(`expected at most one model, got ${parsed.positionals.join(" ")}`);
  }
  const given = parsed.values as Given;
  if (parsed.positionals.length === 1) {
    if (given.model !== undefined) {
      throw new CliError("give the model either as --model or positionally, not both");
    }
    given.model = parsed.positionals[0];
  }
  return given;
}

/** One flag's value: given > its variable > its default. */
function flagValue(
  flag: Flag,
  value: Given[string],
  env: (name: string) => string | undefined,
): unknown {
  const variable = [envName(flag), ...(flag.alsoEnv ?? [])].find((n) => env(n) !== undefined);
  const fromEnv = variable === undefined ? undefined : env(variable);
  if (typeof value === "boolean") return value;
  if (Array.isArray(value)) {
    return value.flatMap((v) => convert(flag, v, `--${flag.name}`) as string[]);
  }
  if (value !== undefined) return convert(flag, value, `--${flag.name}`);
  if (fromEnv !== undefined && !["help", "version"].includes(flag.name)) {
    return convert(flag, fromEnv, variable!);
  }
  if (flag.default !== undefined) return convert(flag, flag.default, `--${flag.name}`);
  if (flag.kind.type === "boolean") return false;
  return undefined;
}

/** `--cache-backend` with `--cache-config`, checked: the step cache requests get by default. */
function cacheOf(o: ServerOptions): CacheConfig | undefined {
  if (o.cacheConfig === undefined) {
    return o.cacheBackend === "none" ? undefined : parseCacheConfig({}, o.cacheBackend);
  }
  if (o.cacheBackend === "none") {
    throw new CliError("--cache-config needs --cache-backend tea_cache or cache_dit");
  }
  let json: unknown;
  try {
    json = JSON.parse(o.cacheConfig);
  } catch {
    throw new CliError(
      `--cache-config must be a JSON object, got ${JSON.stringify(o.cacheConfig)}`,
    );
  }
  if (typeof json === "object" && json !== null && "backend" in json) {
    throw new CliError("--cache-config: give the backend with --cache-backend, not in the JSON");
  }
  try {
    return parseCacheConfig(json, o.cacheBackend);
  } catch (e) {
    throw new CliError(`--cache-config: ${(e as Error).message}`);
  }
}

/** Checks between flags. */
function checkTogether(o: ServerOptions): void {
  o.cache = cacheOf(o);
  if (parseShardSize(o.shardSize) === undefined) {
    throw new CliError(
      `--shard-size must be auto or a size in bytes (e.g. 536870912 or 512M), got ${
        JSON.stringify(o.shardSize)
      }`,
    );
  }
  if (o.allowCredentials && o.allowedOrigins?.includes("*")) {
    throw new CliError("--allow-credentials needs explicit --allowed-origins, not *");
  }
  if (o.publicUrl !== undefined) {
    try {
      const url = new URL(o.publicUrl);
      if (!["http:", "https:"].includes(url.protocol)) throw new Error();
    } catch {
      throw new CliError(`--public-url must be an http(s) URL, got ${JSON.stringify(o.publicUrl)}`);
    }
  }
}

/**
 * Parses `args` over `env` (flag > `DENOISE_*` variable > default). Throws {@linkcode CliError}
 * with a one-line message for anything wrong.
 */
export function parseCli(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): ServerConfig {
  const given = givenFlags(args);
  const options: Record<string, unknown> = {};
  for (const flag of FLAGS) options[camel(flag.name)] = flagValue(flag, given[flag.name], env);
  // The key's long-standing variable name.
  options.apiKey ??= env("DENOISE_API_KEY");
  const o = options as unknown as ServerOptions;
  checkTogether(o);
  return Object.freeze(o);
}

function usage(flag: Flag): string {
  const metavar = flag.kind.type === "boolean"
    ? ""
    : ` ${flag.metavar ?? (flag.kind.type === "enum" ? flag.kind.choices.join("|") : "VALUE")}`;
  return `--${flag.name}${metavar}`;
}

function defaultOf(flag: Flag): string {
  return flag.defaultText ?? flag.default ?? (flag.kind.type === "boolean" ? "off" : "none");
}

/** `--help`. */
export function helpText(): string {
  const lines = FLAGS.map((f) => {
    const names = [usage(f), ...(f.aliases ?? []).map((a) => `--${a}`)].join(", ");
    const details = f.name === "help" || f.name === "version"
      ? f.help
      : `${f.help} (default: ${defaultOf(f)}; env ${
        [envName(f), ...(f.alsoEnv ?? [])].join(", ")
      })`;
    return `  ${names}\n      ${details}`;
  });
  return `denoise: an OpenAI-compatible image generation server

Usage: deno task serve [MODEL] [options]

Every option can also come from its environment variable; a flag wins over the variable.

${lines.join("\n")}
`;
}

/** The README's flag table (markdown). */
export function flagTable(): string {
  const escape = (s: string) => s.replaceAll("|", "\\|");
  const rows = FLAGS.filter((f) => !["help", "version"].includes(f.name)).map((f) => {
    const names = [`\`${usage(f)}\``, ...(f.aliases ?? []).map((a) => `\`--${a}\``)].join(", ");
    const vars = [envName(f), ...(f.alsoEnv ?? [])].map((v) => `\`${v}\``).join(", ");
    return `| ${escape(names)} | ${vars} | ${escape(defaultOf(f))} | ${escape(f.help)} |`;
  });
  return ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |", ...rows]
    .join("\n");
}
