/**
 * The `lora` field of a request, as vLLM-Omni accepts it (its aliases, `scale`, `int_id`), plus a
 * list of such objects applied together, turned into the engine's adapter specs. Where adapters
 * may come from is the operator's choice: names registered with `--lora-modules`, and paths under
 * a `--lora-root`. A request path is checked twice before any file is opened: as written (after
 * `..` is resolved) and as it really is (after symlinks are resolved), each against the roots.
 * Messages name a request adapter by its path relative to the root it was found under and a
 * registered one by its name: never by a path of this server.
 *
 * @module
 */
import { isAbsolute, relative, resolve } from "node:path";
import {
  type AdapterFiles,
  adapterFiles,
  LoraError,
  type LoraSpec,
  MAX_LORA_SCALE,
  MAX_LORAS_PER_REQUEST,
} from "../../compute/mod.ts";
import { badRequest } from "../errors.ts";

/** vLLM-Omni's aliases; the first non-empty string (or non-null value) wins. */
const NAME_KEYS = ["name", "lora_name", "adapter"];
const PATH_KEYS = ["local_path", "path", "lora_path", "lora_local_path"];
const SCALE_KEYS = ["scale", "lora_scale"];
const ID_KEYS = ["int_id", "lora_int_id"];

const fail = (message: string) => badRequest(message, "lora");

/** An operator-configured adapter source (startup errors: one line each). */
export class LoraConfigError extends Error {
  override name = "LoraConfigError";
}

/**
 * vLLM-Omni's `stable_lora_int_id`: the first 8 bytes of SHA-256 of the path, big-endian, without
 * the sign bit; 1 if that is 0.
 */
export async function stableLoraIntId(path: string): Promise<bigint> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(path));
  const id = new DataView(digest).getBigUint64(0) & ((1n << 63n) - 1n);
  return id === 0n ? 1n : id;
}

/** Turns `lora` fields into adapter specs, within the operator's roots and registered names. */
export class LoraResolver {
  readonly #roots: string[];
  readonly #modules: Map<string, { path: string; files: AdapterFiles }>;

  private constructor(
    roots: string[],
    modules: Map<string, { path: string; files: AdapterFiles }>,
  ) {
    this.#roots = roots;
    this.#modules = modules;
  }

  /** No roots, no names: every request adapter is refused. */
  static readonly none: LoraResolver = new LoraResolver([], new Map());

  /**
   * Checks the roots (existing folders) and the registered `name=path` adapters (present, names
   * unique); throws {@linkcode LoraConfigError}.
   */
  static async create(roots: readonly string[] = [], modules: readonly string[] = []) {
    const realRoots: string[] = [];
    for (const root of roots) {
      const real = await Deno.realPath(root).catch(() => {
        throw new LoraConfigError(`--lora-root ${root}: no such folder`);
      });
      if (!(await Deno.stat(real)).isDirectory) {
        throw new LoraConfigError(`--lora-root ${root}: not a folder`);
      }
      realRoots.push(real);
    }
    const registered = new Map<string, { path: string; files: AdapterFiles }>();
    for (const entry of modules) {
      const at = entry.indexOf("=");
      const [name, path] = at < 0 ? [entry, ""] : [entry.slice(0, at), entry.slice(at + 1)];
      if (!name.trim() || !path.trim()) {
        throw new LoraConfigError(
          `--lora-modules ${entry}: Diffusion LoRA registration requires a name and path (NAME=PATH).`,
        );
      }
      if (registered.has(name)) {
        throw new LoraConfigError(`Duplicate diffusion LoRA name: '${name}'.`);
      }
      const files = await adapterFiles(path).catch((e) => {
        throw new LoraConfigError(`--lora-modules ${entry}: ${(e as Error).message}`);
      });
      registered.set(name, { path, files: { ...files, label: name } });
    }
    return new LoraResolver(realRoots, registered);
  }

  /** Names registered with `--lora-modules`. */
  get names(): string[] {
    return [...this.#modules.keys()];
  }

  /**
   * The registered adapters as `/v1/models` lists them: each name with the last part of its path
   * (the folder or file name; the server's own paths stay private).
   */
  get modules(): { name: string; root: string }[] {
    return [...this.#modules].map(([name, { path }]) => ({
      name,
      root: path.replace(/\/+$/, "").split("/").at(-1)!,
    }));
  }

  /** The request's adapters, or undefined without any; throws 400 ApiErrors. */
  async resolve(field: unknown): Promise<LoraSpec[] | undefined> {
    if (field === undefined || field === null) return undefined;
    const items = Array.isArray(field) ? field : [field];
    if (items.length > MAX_LORAS_PER_REQUEST) {
      throw fail(
        `At most ${MAX_LORAS_PER_REQUEST} LoRA adapters may be applied at once, got ${items.length}.`,
      );
    }
    const specs: LoraSpec[] = [];
    for (const item of items) {
      if (typeof item !== "object" || item === null || Array.isArray(item)) {
        throw fail("Invalid lora field: expected an object or a list of objects.");
      }
      specs.push(await this.#resolveOne(item as Record<string, unknown>));
    }
    return specs;
  }

  async #resolveOne(lora: Record<string, unknown>): Promise<LoraSpec> {
    const first = (keys: string[]) =>
      keys.map((k) => lora[k]).find((v): v is string => typeof v === "string" && v !== "");
    const value = (keys: string[]) => keys.map((k) => lora[k]).find((v) => v != null);
    let name = first(NAME_KEYS);
    const requestPath = first(PATH_KEYS);
    const scale = parseScale(value(SCALE_KEYS));
    const intId = parseIntId(value(ID_KEYS));
    if (!name && !requestPath) {
      throw fail("Invalid lora object: both name and path are required.");
    }
    const module = name ? this.#modules.get(name) : undefined;
    let path: string;
    let files: AdapterFiles;
    if (module) {
      if (requestPath !== undefined && requestPath !== module.path) {
        throw fail(
          `LoRA '${name}' is registered with another path (path conflicts); give just the name.`,
        );
      }
      ({ path, files } = module);
    } else if (requestPath !== undefined) {
      path = requestPath;
      files = await this.#filesUnderRoots(requestPath);
    } else {
      const known = this.names;
      throw fail(
        `unknown LoRA name '${name}': ${
          known.length ? `registered names are ${known.join(", ")}` : "no names are registered"
        } (--lora-modules NAME=PATH); or give local_path.`,
      );
    }
    name ??= path.replace(/\/+$/, "").split("/").at(-1)!.replace(/\.safetensors$/, "");
    const id = intId ?? await stableLoraIntId(path);
    // The id also names the files' version, so an adapter rewritten in place is merged anew.
    const stamp = await Deno.stat(files.weights).then((s) => `${s.size}:${s.mtime?.getTime()}`);
    return { id: `${id}:${files.weights}:${stamp}`, name, files, scale };
  }

  async #filesUnderRoots(path: string): Promise<AdapterFiles> {
    if (this.#roots.length === 0) {
      throw fail(
        "LoRA local_path is not allowed: this server reads request adapters only from folders given with --lora-root DIR (none was given), or by a name registered with --lora-modules NAME=PATH.",
      );
    }
    // Relative paths are relative to a root; the first root that holds them wins.
    const candidates = isAbsolute(path)
      ? [resolve(path)]
      : this.#roots.map((r) => resolve(r, path));
    const written = candidates.map((p) => ({ path: p, within: this.#within(p) }))
      .find((c) => c.within !== undefined);
    if (!written) {
      throw fail(`LoRA path '${path}' is outside every --lora-root; nothing was read.`);
    }
    const label = written.within || ".";
    let files: AdapterFiles;
    try {
      files = await adapterFiles(written.path, label);
    } catch (e) {
      if (e instanceof LoraError) throw fail(e.message);
      throw e;
    }
    for (const real of [files.weights, files.config].filter((p) => p !== undefined)) {
      if (this.#within(real) === undefined) {
        throw fail(
          `LoRA path '${label}' leads outside every --lora-root (through a symbolic link); nothing was read.`,
        );
      }
    }
    return files;
  }

  /** `path` relative to the first root that holds it ("" for a root itself), if one does. */
  #within(path: string): string | undefined {
    for (const root of this.#roots) {
      const rel = relative(root, path);
      if (!rel.startsWith("..") && !isAbsolute(rel)) return rel;
    }
    return undefined;
  }
}

function parseScale(scale: unknown): number {
  if (scale === undefined) return 1;
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw fail("LoRA scale must be a finite number.");
  }
  if (Math.abs(scale) > MAX_LORA_SCALE) {
    throw fail(
      `LoRA scale must be between -${MAX_LORA_SCALE} and ${MAX_LORA_SCALE}, got ${scale}.`,
    );
  }
  return scale;
}

function parseIntId(id: unknown): bigint | undefined {
  if (id === undefined) return undefined;
  if (typeof id !== "number" || !Number.isSafeInteger(id)) {
    throw fail("LoRA int_id must be an integer.");
  }
  return BigInt(id);
}
