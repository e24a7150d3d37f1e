/**
 * `--model` sources that hold PyTorch weights rather than ONNX graphs (a diffusers folder of
 * `.safetensors`, or one single-file checkpoint) are converted on first load into a cache of
 * converted model folders, and later starts reuse it.
 *
 * The cache is `$DENOISE_CACHE/converted/` (default `$XDG_CACHE_HOME/denoise`, else
 * `~/.cache/denoise`, beside the Hugging Face cache). A folder's name is the source's name plus a
 * key: a hash of the source's identity, the output dtype and {@linkcode CONVERTER_VERSION}. A
 * source's identity is, file by file, its path and either the blob a hub-cache link points at
 * (the blob's name is its content hash) or its size and modification time; hashing the bytes of a
 * multi-gigabyte checkpoint on every start would cost seconds per gigabyte.
 *
 * The converter writes into a temporary folder beside the target and renames it into place, so a
 * cache folder is complete or absent. Servers converting the same key take turns on a lock file:
 * the second finds the first's result. The conversion runs in a worker, so the HTTP thread keeps
 * answering `/health` meanwhile.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { ConvertError, ModelLoadError } from "../errors.ts";
import { exists } from "./files.ts";
import type { DownloadProgress } from "./hub_download.ts";

/**
 * The converter's output version, part of every cache key: bump it when the converter's output
 * for the same input changes (its graphs, or the known configs and tokenizers a single file is
 * converted with: `compute/convert/known_configs/`), so caches made by an older converter are not
 * reused. 2: the q8/q4 UNet's conv kernels are int8; 3: the q4 UNet's are 4 bits.
 */
export const CONVERTER_VERSION = 3;

/** Folders of a diffusers pipeline that the server does not run, so none is converted. */
const NOT_CONVERTED = new Set(["safety_checker", "feature_extractor", "image_encoder"]);

/** What to convert. */
export interface ConversionSource {
  /** A diffusers pipeline folder of `.safetensors`, or a single-file `.safetensors` checkpoint. */
  src: string;
  /**
   * For a single file: the diffusers folder whose configs, tokenizer and scheduler it uses; without
   * it, those its family's keys name (the converter's known configs, part of `CONVERTER_VERSION`).
   */
  config?: string;
  /** Output weight precision (the converter's `--dtype`); default fp32. */
  dtype?: string;
  /** How the cache folder's name starts: the hub id or the source's name. */
  label: string;
}

/** A conversion into the cache, planned: done already, or to be run. */
export interface Conversion {
  /** The converted model folder in the cache. */
  dir: string;
  /** Whether `dir` was already there (nothing to run). */
  cached: boolean;
  /** Bytes of safetensors weights the conversion reads. */
  totalBytes: number;
  /**
   * Converts into `dir` (or finds it there, made meanwhile by another server) and returns it.
   * Progress counts the input's bytes: the stored tensors read so far (the files' headers and any
   * tensor the architecture leaves unused are counted when it is done).
   */
  run(
    options?: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
  ): Promise<string>;
}

/** The cache root of converted model folders. */
export function convertedCacheDir(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): string {
  const root = env("DENOISE_CACHE") ||
    (env("XDG_CACHE_HOME")
      ? `${env("XDG_CACHE_HOME")}/denoise`
      : `${env("HOME") ?? "."}/.cache/denoise`);
  return `${root}/converted`;
}

/** Files under `dir` (relative paths, sorted), leaving out hidden ones. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(dir, prefix))) {
    if (entry.name.startsWith(".")) continue;
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    const info = await Deno.stat(join(dir, path));
    if (info.isDirectory) out.push(...await listFiles(dir, path));
    else out.push(path);
  }
  return out.sort();
}

/** One file's identity: the blob a hub-cache link names, else its size and modification time. */
async function fileIdentity(path: string): Promise<string> {
  const link = await Deno.lstat(path);
  if (link.isSymlink) return `blob ${basename(await Deno.readLink(path))}`;
  return `${link.size} ${link.mtime?.getTime() ?? 0}`;
}

/** The safetensors files a source's conversion reads. */
async function weightFiles(source: ConversionSource): Promise<string[]> {
  if ((await Deno.stat(source.src)).isFile) return [source.src];
  return (await listFiles(source.src))
    .filter((p) => p.endsWith(".safetensors") && !NOT_CONVERTED.has(p.split("/")[0]))
    .map((p) => join(source.src, p));
}

/** The cache key of a source: its identity, the dtype and the converter's version, hashed. */
async function conversionKey(source: ConversionSource, dtype: string): Promise<string> {
  const hash = createHash("sha256").update(`denoise-converter ${CONVERTER_VERSION} ${dtype}\n`);
  const roots = [source.src, ...(source.config ? [source.config] : [])];
  for (const root of roots) {
    if ((await Deno.stat(root)).isFile) {
      hash.update(`file ${basename(root)} ${await fileIdentity(root)}\n`);
      continue;
    }
    for (const path of await listFiles(root)) {
      hash.update(`${path} ${await fileIdentity(join(root, path))}\n`);
    }
  }
  return hash.digest("hex").slice(0, 16);
}

/** The converter's temporary folders for `dir` (it writes `.<name>.converting-*` beside it). */
async function temporaryFolders(dir: string): Promise<string[]> {
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  const prefix = `.${basename(dir)}.converting-`;
  const found: string[] = [];
  for await (const entry of Deno.readDir(parent)) {
    if (entry.name.startsWith(prefix)) found.push(join(parent, entry.name));
  }
  return found;
}

/**
 * Plans converting `source` into the cache at `cacheRoot`: finds its folder there, or says what
 * running the conversion will read. A source with no weights to convert, or a single file whose
 * family its keys do not tell (without `config`), is a {@linkcode ConvertError}.
 */
export async function planConversion(
  source: ConversionSource,
  cacheRoot: string = convertedCacheDir(),
): Promise<Conversion> {
  const dtype = source.dtype ?? "fp32";
  // The converter's own list (its module is imported here only when a conversion is planned).
  const { DTYPES } = await import("../convert/mod.ts");
  if (!(DTYPES as readonly string[]).includes(dtype)) {
    throw new ConvertError(
      `--convert-dtype ${dtype} is not supported (supported: ${DTYPES.join(", ")})`,
    );
  }
  const files = await weightFiles(source);
  if (!files.length) {
    throw new ConvertError(`${source.src}: no .safetensors weights to convert`);
  }
  if (!source.config && (await Deno.stat(source.src)).isFile) {
    // A single file of no known family is refused now (its header alone), not after listening.
    const { detectFamily } = await import("../convert/single_file.ts");
    const { readSafetensors } = await import("../convert/weights.ts");
    detectFamily(source.src, await readSafetensors(source.src));
  }
  const name = source.label.replace(/[^\w.-]+/g, "--").replace(/^[.-]+/, "");
  const dir = `${cacheRoot}/${name}-${dtype}-${await conversionKey(source, dtype)}`;
  let totalBytes = 0;
  for (const f of files) totalBytes += (await Deno.stat(f)).size;
  return {
    dir,
    cached: await exists(dir),
    totalBytes,
    run: (options = {}) => runConversion(source, dtype, dir, files, totalBytes, options),
  };
}

async function runConversion(
  source: ConversionSource,
  dtype: string,
  dir: string,
  files: string[],
  totalBytes: number,
  options: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
): Promise<string> {
  try {
    await Deno.mkdir(`${dir.slice(0, dir.lastIndexOf("/"))}/.locks`, { recursive: true });
  } catch (e) {
    throw new ModelLoadError(
      `cannot write the converted-model cache ${dir}: ${
        (e as Error).message
      }; set DENOISE_CACHE to a writable folder`,
    );
  }
  using lock = await Deno.open(
    `${dir.slice(0, dir.lastIndexOf("/"))}/.locks/${basename(dir)}.lock`,
    {
      create: true,
      write: true,
    },
  );
  await lock.lock(true);
  if (await exists(dir)) return dir;
  // Holding the lock, no one else converts this key: a temporary folder left is from a killed run.
  for (const stale of await temporaryFolders(dir)) await Deno.remove(stale, { recursive: true });
  const progress: DownloadProgress = {
    file: "converting",
    bytes: 0,
    totalBytes,
    filesDone: 0,
    fileCount: files.length,
  };
  options.onProgress?.({ ...progress });
  const onRead = (read: number) => {
    progress.bytes = Math.min(read, totalBytes);
    options.onProgress?.({ ...progress });
  };
  try {
    await convertInWorker(source, dtype, dir, onRead, options.signal);
  } catch (e) {
    for (const tmp of await temporaryFolders(dir)) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
    throw e;
  }
  progress.bytes = totalBytes;
  progress.filesDone = files.length;
  options.onProgress?.({ ...progress });
  return dir;
}

/**
 * Runs `convert()` in a worker, telling `onRead` the bytes of stored tensors it has read so far;
 * its failure is rethrown here as a {@linkcode ModelLoadError}.
 */
function convertInWorker(
  source: ConversionSource,
  dtype: string,
  dir: string,
  onRead: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const worker = new Worker(new URL("./convert_worker.ts", import.meta.url), { type: "module" });
  const done = Promise.withResolvers<void>();
  const abort = () => done.reject(new ModelLoadError(`converting ${source.src}: cancelled`));
  signal?.addEventListener("abort", abort);
  worker.onmessage = (event: MessageEvent<{ read?: number; error?: string }>) => {
    if (event.data.read !== undefined) onRead(event.data.read);
    else if (event.data.error === undefined) done.resolve();
    else done.reject(new ModelLoadError(event.data.error));
  };
  worker.onerror = (event) => {
    event.preventDefault();
    done.reject(new ModelLoadError(`converting ${source.src} failed: ${event.message}`));
  };
  worker.postMessage({ src: source.src, out: dir, options: { dtype, config: source.config } });
  return done.promise.finally(() => {
    signal?.removeEventListener("abort", abort);
    worker.terminate();
  });
}
