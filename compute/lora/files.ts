/**
 * An adapter's files on disk: a PEFT folder (`adapter_config.json` + `adapter_model.safetensors`)
 * or a single `.safetensors` file. Paths are resolved (symlinks included) before anything is
 * read, so that a caller can check where they really point; only regular files under a size cap
 * are read.
 *
 * @module
 */
import { type LoraAdapter, LoraError, parseAdapter } from "./adapter.ts";

/** The real paths of an adapter's files. */
export interface AdapterFiles {
  weights: string;
  /** A PEFT folder's `adapter_config.json`. */
  config?: string;
}

/** PEFT's file names. */
const PEFT_WEIGHTS = "adapter_model.safetensors";
const PEFT_CONFIG = "adapter_config.json";

/**
 * Resolves `path` (a PEFT folder or a `.safetensors` file) to the real paths of its files,
 * without opening any. Throws {@linkcode LoraError} when there is no adapter there.
 */
export async function adapterFiles(path: string): Promise<AdapterFiles> {
  const real = await realPath(path, path);
  const info = await Deno.stat(real);
  if (info.isFile) return { weights: real };
  if (!info.isDirectory) throw new LoraError(`LoRA path '${path}' is not a file or folder`);
  const weights = await realPath(`${real}/${PEFT_WEIGHTS}`, path).catch(async (e) => {
    const hasBin = await Deno.stat(`${real}/adapter_model.bin`).then(() => true, () => false);
    throw hasBin
      ? new LoraError(
        `LoRA folder '${path}' has adapter_model.bin (a pickle), which this server does not load; save the adapter as safetensors`,
      )
      : e;
  });
  const config = await realPath(`${real}/${PEFT_CONFIG}`, path).catch(() => undefined);
  return { weights, config };
}

async function realPath(path: string, asked: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new LoraError(
        path === asked
          ? `LoRA path '${asked}' does not exist`
          : `LoRA folder '${asked}' has no ${path.slice(path.lastIndexOf("/") + 1)}`,
      );
    }
    throw new LoraError(`LoRA path '${asked}' cannot be read: ${(e as Error).message}`);
  }
}

/** Reads and parses an adapter's files; each must be a regular file of at most `maxBytes`. */
export async function readAdapter(
  files: AdapterFiles,
  maxBytes: number,
  source = files.config ? files.weights.slice(0, files.weights.lastIndexOf("/")) : files.weights,
): Promise<LoraAdapter> {
  const weights = await readCapped(files.weights, maxBytes);
  const config = files.config === undefined
    ? undefined
    : new TextDecoder().decode(await readCapped(files.config, 1 << 20));
  return parseAdapter(weights, source, config);
}

async function readCapped(path: string, maxBytes: number): Promise<Uint8Array> {
  const file = await Deno.open(path).catch((e) => {
    throw new LoraError(`LoRA file '${path}' cannot be opened: ${(e as Error).message}`);
  });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new LoraError(`LoRA file '${path}' is not a regular file`);
    if (info.size > maxBytes) {
      throw new LoraError(
        `LoRA file '${path}' has ${info.size} bytes, more than this server's limit of ${maxBytes} (--max-lora-file-mb)`,
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
