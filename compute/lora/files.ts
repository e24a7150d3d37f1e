/**
 * An adapter's files on disk: a PEFT folder (`adapter_config.json` + `adapter_model.safetensors`)
 * or a single `.safetensors` file. Paths are resolved (symlinks included) before anything is
 * read, so that a caller can check where they really point; only regular files under a size cap
 * are read. Messages name an adapter by its label (e.g. its path relative to the folder it was
 * found under), never by the real paths, which a client of a server must not see.
 *
 * @module
 */
import { basename } from "node:path";
import { type LoraAdapter, LoraError, parseAdapter } from "./adapter.ts";

/** The real paths of an adapter's files. */
export interface AdapterFiles {
  weights: string;
  /** A PEFT folder's `adapter_config.json`. */
  config?: string;
  /** What messages call the adapter. */
  label: string;
}

/** PEFT's file names. */
const PEFT_WEIGHTS = "adapter_model.safetensors";
const PEFT_CONFIG = "adapter_config.json";

/**
 * Resolves `path` (a PEFT folder or a `.safetensors` file) to the real paths of its files,
 * without opening any. Throws {@linkcode LoraError} when there is no adapter there, naming it
 * `label`.
 */
export async function adapterFiles(path: string, label = path): Promise<AdapterFiles> {
  const real = await realPath(path, label);
  const info = await Deno.stat(real);
  if (info.isFile) return { weights: real, label };
  if (!info.isDirectory) throw new LoraError(`LoRA path '${label}' is not a file or folder`);
  const weights = await realPath(`${real}/${PEFT_WEIGHTS}`, label, PEFT_WEIGHTS).catch(
    async (e) => {
      const hasBin = await Deno.stat(`${real}/adapter_model.bin`).then(() => true, () => false);
      throw hasBin
        ? new LoraError(
          `LoRA folder '${label}' has adapter_model.bin (a pickle), which this server does not load; save the adapter as safetensors`,
        )
        : e;
    },
  );
  const config = await realPath(`${real}/${PEFT_CONFIG}`, label, PEFT_CONFIG).catch(() =>
    undefined
  );
  return { weights, config, label };
}

/** The real path of `path`: the adapter `label` itself, or its folder's file `inFolder`. */
async function realPath(path: string, label: string, inFolder?: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new LoraError(
        inFolder === undefined
          ? `LoRA path '${label}' does not exist`
          : `LoRA folder '${label}' has no ${inFolder}`,
      );
    }
    throw new LoraError(`LoRA path '${label}' cannot be read: ${osReason(e)}`);
  }
}

/** A file system error's reason without the path Deno appends (`…: open '/x/y'`). */
function osReason(error: unknown): string {
  return (error as Error).message.replace(/: \w+ '.*'$/s, "");
}

/** Reads and parses an adapter's files; each must be a regular file of at most `maxBytes`. */
export async function readAdapter(files: AdapterFiles, maxBytes: number): Promise<LoraAdapter> {
  // A PEFT folder's files are named inside the folder's label.
  const shown = (path: string) => files.config ? `${files.label}/${basename(path)}` : files.label;
  const weights = await readCapped(files.weights, maxBytes, shown(files.weights));
  const config = files.config === undefined
    ? undefined
    : new TextDecoder().decode(await readCapped(files.config, 1 << 20, shown(files.config)));
  return parseAdapter(weights, files.label, config);
}

async function readCapped(path: string, maxBytes: number, shown: string): Promise<Uint8Array> {
  const name = `LoRA file '${shown}'`;
  const file = await Deno.open(path).catch((e) => {
    throw new LoraError(`${name} cannot be opened: ${osReason(e)}`);
  });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new LoraError(`${name} is not a regular file`);
    if (info.size > maxBytes) {
      throw new LoraError(
        `${name} has ${info.size} bytes, more than this server's limit of ${maxBytes} (--max-lora-file-mb)`,
      );
    }
    const bytes = new Uint8Array(info.size);
    let at = 0;
    while (at < bytes.length) {
      const n = await file.read(bytes.subarray(at));
      if (n === null) break;
      at += n;
    }
    return bytes.subarray(0, at);
  } finally {
    file.close();
  }
}
