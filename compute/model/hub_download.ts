/**
 * Downloading an ONNX export (or, for a repo without one, the `.safetensors` a conversion reads)
 * from the Hugging Face hub into the hub cache, with
 * `@huggingface/hub` for the API calls and the byte streams.
 *
 * The cache layout is huggingface_hub's (`models--Org--Name/{refs/main, blobs/<etag>,
 * snapshots/<sha>/<path> -> ../../blobs/<etag>}`), so Python tools and this server share one
 * cache. A file downloads into `blobs/<etag>.incomplete`; an interrupted download resumes from
 * there with a range request, and every file is checked against its hub checksum (SHA-256 for
 * LFS files, the git blob SHA-1 otherwise) before it is moved into place.
 *
 * @module
 */
import { downloadFile, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { createHash, type Hash } from "node:crypto";
import { HubError, ModelLoadError } from "../errors.ts";
import { PICKLE_EXTENSIONS } from "../convert/weights.ts";
import { exists } from "./files.ts";
import { type DetectedLayout, publishedDownload } from "./published_layouts.ts";

/** Where and how to reach the hub, as huggingface_hub reads it from the environment. */
export interface HubSettings {
  /** `HF_ENDPOINT`, default `https://huggingface.co`. */
  endpoint: string;
  /** `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the token file (`HF_TOKEN_PATH`, `HF_HOME/token`). */
  token?: string;
  /** `HF_HUB_OFFLINE=1`: never touch the network. */
  offline: boolean;
  /** Seconds to wait for a metadata request (`HF_HUB_ETAG_TIMEOUT`, default 10). */
  metadataTimeoutS: number;
  /** Seconds without a byte before a file download is abandoned (`HF_HUB_DOWNLOAD_TIMEOUT`, default 60). */
  stallTimeoutS: number;
}

/** Reads {@linkcode HubSettings} from the environment. */
export async function hubSettings(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<HubSettings> {
  const truthy = (v?: string) => ["1", "true", "yes", "on"].includes((v ?? "").toLowerCase());
  const seconds = (v: string | undefined, fallback: number) => Number(v) > 0 ? Number(v) : fallback;
  const home = env("HF_HOME") ?? `${env("HOME") ?? ""}/.cache/huggingface`;
  let token = env("HF_TOKEN") || env("HUGGING_FACE_HUB_TOKEN");
  if (!token) {
    try {
      token = (await Deno.readTextFile(env("HF_TOKEN_PATH") ?? `${home}/token`)).trim();
    } catch {
      // No token file: anonymous access.
    }
  }
  return {
    endpoint: (env("HF_ENDPOINT") || "https://huggingface.co").replace(/\/+$/, ""),
    token: token || undefined,
    offline: truthy(env("HF_HUB_OFFLINE")),
    metadataTimeoutS: seconds(env("HF_HUB_ETAG_TIMEOUT"), 10),
    stallTimeoutS: seconds(env("HF_HUB_DOWNLOAD_TIMEOUT"), 60),
  };
}

/** A file to fetch, with the checksum the hub publishes for it. */
export interface HubFile {
  path: string;
  size: number;
  /** The blob name in the cache: the LFS SHA-256, or the git blob SHA-1. */
  etag: string;
  checksum: "sha256" | "git-sha1";
}

/** What a download will fetch: one commit of one repo, restricted to the files the loader reads. */
export interface DownloadPlan {
  repoId: string;
  /**
   * `onnx`: the repo's ONNX export; `safetensors`: it has none, so its PyTorch weights of one
   * variant (see {@linkcode weightVariant}) are fetched to be converted.
   */
  format: "onnx" | "safetensors";
  /** The commit `main` pointed at when planned. */
  sha: string;
  files: HubFile[];
  totalBytes: number;
  /** Repo files left out (PyTorch weights, READMEs, images…). */
  skipped: string[];
  /** `<cache>/models--Org--Name`. */
  repoDir: string;
  /** `<repoDir>/snapshots/<sha>`: the model folder once downloaded. */
  snapshotDir: string;
  /** A published export without `model_index.json` (`compute/model/published_layouts.ts`). */
  published?: DetectedLayout;
}

/** Byte progress of a download. */
export interface DownloadProgress {
  /** The file being fetched. */
  file: string;
  /** Bytes in place so far over all files (resumed bytes included). */
  bytes: number;
  totalBytes: number;
  /** Files finished so far. */
  filesDone: number;
  fileCount: number;
}

/**
 * The files an ONNX export's loader reads: `model_index.json`, and in each component folder its
 * configs, tokenizer files and `model.onnx` with its external data. Everything else (PyTorch
 * weights, other export variants, READMEs) is skipped.
 */
const LOADER_FILES = /^model_index\.json$|^[^/]+\/([^/]+\.(json|txt)|model\.onnx(_data)?)$/;

/**
 * The files a conversion reads from a diffusers repo without an ONNX export: `model_index.json`,
 * each component's configs, shard indexes and tokenizer files, and its `.safetensors` weights
 * (of the variant {@linkcode weightVariant} picks). The components the server does not run are
 * left out.
 */
const SOURCE_FILES =
  /^model_index\.json$|^(?!(safety_checker|feature_extractor|image_encoder)\/)[^/]+\/([^/]+\.(json|txt)|[^/]+\.safetensors)$/;

/** A weights file's variant: `.fp16` of `model.fp16.safetensors` or `x.fp16-00001-of-00002.safetensors`. */
function variantOf(path: string): string {
  return /(\.[a-z0-9]+)?(-\d+-of-\d+)?\.safetensors$/.exec(path.split("/")[1].replace(/^[^.]*/, ""))
    ?.[1] ?? "";
}

/**
 * The weights variant downloaded for a component folder: the default (no variant, the
 * precision the model was published in) when the folder has it, else `.fp16`, else `.bf16` —
 * the order in which the converter looks for them, as diffusers loads without `variant=`.
 */
function weightVariant(component: string[]): string | undefined {
  const variants = new Set(component.map(variantOf));
  return ["", ".fp16", ".bf16"].find((v) => variants.has(v));
}

/**
 * Of a repo's files, those a conversion reads, when it has `model_index.json`, no ONNX graphs and
 * `.safetensors` weights; undefined otherwise.
 */
function sourceFiles(paths: string[]): Set<string> | undefined {
  if (!paths.includes("model_index.json") || paths.some((p) => /(^|\/)model\.onnx$/.test(p))) {
    return undefined;
  }
  const wanted = paths.filter((p) => SOURCE_FILES.test(p));
  const weights = new Map<string, string[]>();
  for (const p of wanted.filter((p) => p.endsWith(".safetensors"))) {
    const component = p.split("/")[0];
    weights.set(component, [...weights.get(component) ?? [], p]);
  }
  if (!weights.size) return undefined;
  const chosen = new Set(wanted.filter((p) => !p.endsWith(".safetensors")));
  for (const files of weights.values()) {
    const variant = weightVariant(files);
    for (const p of files) if (variantOf(p) === variant) chosen.add(p);
  }
  return chosen;
}

/** `fetch` with a time limit on each request, for the hub's metadata calls. */
function timedFetch(timeoutS: number): typeof fetch {
  return (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(timeoutS * 1000) });
}

function explain(e: unknown, repoId: string, settings: HubSettings): HubError {
  if (e instanceof HubError) return e;
  if (e instanceof HubApiError) {
    const reason = e.message.replace(/\. URL: .*$/, "");
    if (e.statusCode === 401 || e.statusCode === 403) {
      return new HubError(
        `the hub at ${settings.endpoint} refused access to '${repoId}' (${e.statusCode}: ${reason}). ` +
          (settings.token
            ? `The token in use (HF_TOKEN) lacks access: accept the model's terms on its hub page, or use another token.`
            : `Set HF_TOKEN to an access token (https://huggingface.co/settings/tokens) for a gated or private model.`),
      );
    }
    if (e.statusCode === 404) {
      return new HubError(
        `the hub at ${settings.endpoint} has no model '${repoId}' (404: ${reason})` +
          (settings.token ? "" : "; if it is private, set HF_TOKEN"),
      );
    }
    return new HubError(`the hub at ${settings.endpoint} answered ${e.statusCode}: ${reason}`);
  }
  const err = e as Error;
  const why = err.name === "TimeoutError"
    ? `no answer within ${settings.metadataTimeoutS} s (HF_HUB_ETAG_TIMEOUT)`
    : err.message;
  return new HubError(`the hub at ${settings.endpoint} could not be reached (${why})`);
}

/**
 * Asks the hub what downloading `repoId` would fetch: the commit `main` points at and the loader's
 * files in it. Fails fast, with a {@linkcode HubError} that says why, when the hub is unreachable,
 * refuses access, or the repo holds neither an ONNX export nor a diffusers folder of `.safetensors`.
 */
export async function planDownload(
  repoId: string,
  cacheDir: string,
  settings: HubSettings,
  /** The variant of a published export with several (its default when absent). */
  variant?: string,
): Promise<DownloadPlan> {
  if (settings.token && !settings.token.startsWith("hf_")) {
    throw new HubError("HF_TOKEN is not a Hugging Face access token (they start with 'hf_')");
  }
  const credentials = {
    hubUrl: settings.endpoint,
    accessToken: settings.token,
    fetch: timedFetch(settings.metadataTimeoutS),
  };
  try {
    const { sha } = await modelInfo({
      name: repoId,
      revision: "main",
      additionalFields: ["sha"],
      ...credentials,
    });
    const listed: HubFile[] = [];
    const tree = listFiles({ repo: repoId, revision: sha, recursive: true, ...credentials });
    for await (const entry of tree) {
      if (entry.type !== "file") continue;
      if (!entry.lfs && !entry.oid) {
        throw new HubError(`the hub listed ${entry.path} without a checksum`);
      }
      listed.push(
        entry.lfs
          ? { path: entry.path, size: entry.lfs.size, etag: entry.lfs.oid, checksum: "sha256" }
          : { path: entry.path, size: entry.size, etag: entry.oid!, checksum: "git-sha1" },
      );
    }
    const paths = listed.map((f) => f.path);
    const source = sourceFiles(paths);
    const published = source ? undefined : await publishedDownload(paths, repoId, variant).catch(
      (e) => {
        throw e instanceof ModelLoadError ? new HubError(e.message) : e;
      },
    );
    const wanted = source ?? new Set(published?.files ?? paths.filter((p) => LOADER_FILES.test(p)));
    const files = listed.filter((f) => wanted.has(f.path));
    const skipped = paths.filter((p) => !wanted.has(p));
    if (published) {
      // In the order publishedDownload gives: the graphs last mark a complete snapshot.
      const order = published.files;
      files.sort((a, b) => order.indexOf(a.path) - order.indexOf(b.path));
    }
    if (
      !source && !published &&
      (!wanted.has("model_index.json") || ![...wanted].some((p) => /\/model\.onnx$/.test(p)))
    ) {
      const pickled = paths.some((p) => PICKLE_EXTENSIONS.some((ext) => p.endsWith(ext)));
      const sample = skipped.slice(0, 3).join(", ");
      throw new HubError(
        `'${repoId}' on the hub at ${settings.endpoint} holds no diffusers ONNX export ` +
          `(model_index.json and <component>/model.onnx) and no diffusers folder of .safetensors to convert` +
          (sample ? `; it has ${sample}…` : "") +
          (pickled
            ? ` (pickled PyTorch weights are refused: unpickling runs arbitrary code)`
            : "") +
          `. Export the model to ONNX (see docs/onnx-interfaces.md) or pick a repo that has one`,
      );
    }
    // model_index.json goes last: a snapshot holding it is complete, which is how the cache
    // lookup tells a finished download from an interrupted one.
    files.sort((a, b) =>
      Number(a.path === "model_index.json") - Number(b.path === "model_index.json")
    );
    const repoDir = `${cacheDir}/models--${repoId.replace("/", "--")}`;
    return {
      repoId,
      format: source ? "safetensors" : "onnx",
      sha,
      files,
      totalBytes: files.reduce((sum, f) => sum + f.size, 0),
      skipped,
      repoDir,
      snapshotDir: `${repoDir}/snapshots/${sha}`,
      published: published?.detected,
    };
  } catch (e) {
    throw explain(e, repoId, settings);
  }
}

/** Feeds a file's bytes to `hash` as a stream, so a resumed download is verified whole. */
async function hashFile(path: string, hash: Hash): Promise<void> {
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * Fetches the plan's files into the cache (skipping blobs already there, resuming partial ones),
 * links them into the snapshot and points `refs/main` at it. Returns the snapshot folder.
 */
export async function downloadSnapshot(
  plan: DownloadPlan,
  settings: HubSettings,
  options: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const progress: DownloadProgress = {
    file: "",
    bytes: 0,
    totalBytes: plan.totalBytes,
    filesDone: 0,
    fileCount: plan.files.length,
  };
  try {
    await Deno.mkdir(`${plan.repoDir}/blobs`, { recursive: true });
    await Deno.mkdir(`${plan.repoDir}/refs`, { recursive: true });
    await Deno.writeTextFile(`${plan.repoDir}/refs/main`, plan.sha);
  } catch (e) {
    throw new HubError(
      `cannot write to the hub cache at ${plan.repoDir} (${(e as Error).message}); ` +
        `set HF_HUB_CACHE to a writable folder`,
    );
  }
  for (const file of plan.files) {
    progress.file = file.path;
    const blob = `${plan.repoDir}/blobs/${file.etag}`;
    if (await exists(blob)) progress.bytes += file.size;
    else {
      try {
        await fetchBlob(plan, file, blob, settings, (n) => {
          progress.bytes += n;
          options.onProgress?.(progress);
        }, options.signal);
      } catch (e) {
        throw e instanceof HubError ? e : explain(e, plan.repoId, settings);
      }
    }
    const pointer = `${plan.snapshotDir}/${file.path}`;
    const depth = file.path.split("/").length + 1; // snapshots/<sha>/<dirs…>
    await Deno.mkdir(pointer.slice(0, pointer.lastIndexOf("/")), { recursive: true });
    // Link under a unique name, then rename over the pointer: atomic, so concurrent downloads agree.
    const link = `${pointer}.${crypto.randomUUID()}.tmp`;
    await Deno.symlink(`${"../".repeat(depth)}blobs/${file.etag}`, link);
    await Deno.rename(link, pointer);
    progress.filesDone++;
    options.onProgress?.(progress);
  }
  return plan.snapshotDir;
}

async function fetchBlob(
  plan: DownloadPlan,
  file: HubFile,
  blob: string,
  settings: HubSettings,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  // Servers sharing a cache take turns on a blob instead of appending to one partial file; the
  // lock files sit where huggingface_hub keeps its own (`<cache>/.locks/models--Org--Name/`).
  const cacheDir = plan.repoDir.slice(0, plan.repoDir.lastIndexOf("/"));
  const locks = `${cacheDir}/.locks/${plan.repoDir.slice(cacheDir.length + 1)}`;
  await Deno.mkdir(locks, { recursive: true });
  using lock = await Deno.open(`${locks}/${file.etag}.lock`, { create: true, write: true });
  await lock.lock(true);
  if (await exists(blob)) return onBytes(file.size);
  const partial = `${blob}.incomplete`;
  let have = await fileSize(partial);
  if (have > file.size) {
    await Deno.remove(partial);
    have = 0;
  }
  const hash = createHash(file.checksum === "sha256" ? "sha256" : "sha1");
  if (file.checksum === "git-sha1") hash.update(`blob ${file.size}\0`);
  if (have > 0) await hashFile(partial, hash);
  onBytes(have);
  if (have < file.size) {
    // The data stream is abandoned after `stallTimeoutS` without a byte, not after a fixed time.
    const stall = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          stall.abort(new DOMException(`no data for ${settings.stallTimeoutS} s`, "TimeoutError")),
        settings.stallTimeoutS * 1000,
      );
    };
    const guarded: typeof fetch = (input, init) =>
      fetch(input, {
        ...init,
        signal: signal ? AbortSignal.any([stall.signal, signal]) : stall.signal,
      });
    try {
      arm();
      const remote = await downloadFile({
        repo: plan.repoId,
        path: file.path,
        revision: plan.sha,
        hubUrl: settings.endpoint,
        accessToken: settings.token,
        fetch: guarded,
      });
      if (!remote) throw new HubError(`${file.path} vanished from '${plan.repoId}' at ${plan.sha}`);
      const body = have > 0 ? remote.slice(have).stream() : remote.stream();
      using out = await Deno.open(partial, { create: true, append: true });
      const writeAll = async (chunk: Uint8Array) => {
        for (let written = 0; written < chunk.length;) {
          written += await out.write(chunk.subarray(written));
        }
      };
      // One write in flight while the next chunk is read and hashed; writes stay in order, and
      // an interruption keeps every byte written (a resume re-hashes the file from disk).
      let writing = Promise.resolve();
      try {
        for await (const chunk of body) {
          arm();
          await writing;
          writing = writeAll(chunk);
          hash.update(chunk);
          onBytes(chunk.length);
        }
      } finally {
        await writing;
      }
    } catch (e) {
      const got = await fileSize(partial);
      const why = stall.signal.aborted
        ? (stall.signal.reason as Error).message
        : (e as Error).message;
      throw new HubError(
        `downloading ${file.path} of '${plan.repoId}' stopped at ${got} of ${file.size} bytes (${why}); ` +
          `run again to resume from ${partial}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }
  const size = await fileSize(partial);
  const digest = hash.digest("hex");
  if (size !== file.size || digest !== file.etag) {
    await Deno.remove(partial);
    throw new HubError(
      `${file.path} of '${plan.repoId}' failed its checksum (${size} bytes, ${file.checksum} ${digest}; ` +
        `expected ${file.size} bytes, ${file.etag}); the partial file was deleted, run again to refetch it`,
    );
  }
  await Deno.rename(partial, blob);
}
