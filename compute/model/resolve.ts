/**
 * `--model` resolution: a local folder, or a Hugging Face repo id found in the local hub cache
 * (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`; layout
 * `models--Org--Name/snapshots/<rev>/`, with `refs/main` naming the revision), or else downloaded
 * from the hub into the first of those caches.
 *
 * @module
 */
import { HubError, ModelNotFoundError } from "../errors.ts";
import { PICKLE_EXTENSIONS, pickleRefusal } from "../convert/weights.ts";
import { exists } from "./files.ts";
import { detectPublishedLayout } from "./published_layouts.ts";
import {
  type DownloadPlan,
  type DownloadProgress,
  downloadSnapshot,
  hubSettings,
  planDownload,
} from "./hub_download.ts";

/**
 * What the model's files are: ONNX graphs served as they are, or PyTorch weights converted first
 * (`converted.ts`): a diffusers folder of `.safetensors`, or one single-file checkpoint.
 */
export type ModelFormat = "onnx" | "safetensors" | "single-file";

/** Where a model's files are: found on disk, or to be downloaded from the hub first. */
export type ResolvedModel =
  | { dir: string; source: "local" | "hf-cache"; format: ModelFormat }
  | {
    /** The snapshot folder the download fills. */
    dir: string;
    source: "hub";
    format: ModelFormat;
    plan: DownloadPlan;
    download(
      options?: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
    ): Promise<string>;
  };

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/** Whether `--model` names a folder rather than a hub id: `./x`, `../x`, `/x`, `~/x`, `a/b/c`. */
export function looksLikePath(spec: string): boolean {
  return /^(\.{1,2}|~)?[\/\\]/.test(spec) || spec === "." || spec === ".." ||
    spec.split("/").length > 2 || spec.includes("\\") || spec.endsWith("/");
}

/** Hub cache folders to search, in huggingface_hub's order of precedence, without duplicates. */
export function hubCacheDirs(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): string[] {
  const home = env("HOME");
  const candidates = [
    env("HF_HUB_CACHE"),
    env("HUGGINGFACE_HUB_CACHE"),
    env("HF_HOME") && `${env("HF_HOME")}/hub`,
    env("XDG_CACHE_HOME") && `${env("XDG_CACHE_HOME")}/huggingface/hub`,
    home && `${home}/.cache/huggingface/hub`,
  ];
  return [...new Set(candidates.filter((d): d is string => !!d))];
}

/**
 * A model folder's format: ONNX when any `model.onnx` is there (or nothing says otherwise: the
 * loader explains what is missing), `safetensors` when components hold `.safetensors` weights and
 * no graphs. A folder of pickled weights only is refused here: they are never unpickled.
 */
async function folderFormat(dir: string): Promise<ModelFormat> {
  let safetensors = false;
  let pickle = "";
  const look = async (folder: string) => {
    for await (const entry of Deno.readDir(folder)) {
      if (entry.name === "model.onnx") return true;
      if (entry.name.endsWith(".safetensors")) safetensors = true;
      else if (PICKLE_EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
        pickle ||= `${folder}/${entry.name}`;
      }
    }
    return false;
  };
  if (await look(dir)) return "onnx";
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory && !entry.name.startsWith(".") && await look(`${dir}/${entry.name}`)) {
      return "onnx";
    }
  }
  if (safetensors) return "safetensors";
  if (pickle) {
    throw new ModelNotFoundError(
      `--model ${dir} holds pickled PyTorch weights (${pickle}) and no ONNX graphs or .safetensors: ` +
        `refused (unpickling runs arbitrary code); convert them to .safetensors first`,
    );
  }
  return "onnx";
}

/** A local `--model` file: a single-file `.safetensors` checkpoint, converted; nothing else. */
function fileFormat(spec: string): ModelFormat {
  if (spec.endsWith(".safetensors")) return "single-file";
  if (PICKLE_EXTENSIONS.some((ext) => spec.endsWith(ext))) throw pickleRefusal(spec);
  throw new ModelNotFoundError(
    `--model ${spec} is a file, expected a model folder or a single-file .safetensors checkpoint`,
  );
}

/**
 * Whether a snapshot is complete: its `model_index.json` (downloaded last) is there, or every
 * graph of a published layout's variant (downloaded last, `published_layouts.ts`).
 */
async function complete(snapshot: string, variant?: string): Promise<boolean> {
  if (await exists(`${snapshot}/model_index.json`)) return true;
  return (await detectPublishedLayout(snapshot, variant).catch(() => undefined)) !== undefined;
}

async function snapshotIn(
  cache: string,
  repoId: string,
  variant?: string,
): Promise<string | undefined> {
  const repoDir = `${cache}/models--${repoId.replace("/", "--")}`;
  if (!(await exists(`${repoDir}/snapshots`))) return undefined;
  try {
    const rev = (await Deno.readTextFile(`${repoDir}/refs/main`)).trim();
    if (await complete(`${repoDir}/snapshots/${rev}`, variant)) {
      return `${repoDir}/snapshots/${rev}`;
    }
  } catch {
    // No refs/main: fall back to the most recently modified snapshot.
  }
  const snapshots: { path: string; mtime: number }[] = [];
  for await (const entry of Deno.readDir(`${repoDir}/snapshots`)) {
    const path = `${repoDir}/snapshots/${entry.name}`;
    if (entry.isDirectory && await complete(path, variant)) {
      snapshots.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    }
  }
  return snapshots.sort((a, b) => b.mtime - a.mtime)[0]?.path;
}

/**
 * Resolves `--model`: a local folder, else a Hugging Face id in the hub cache, else (unless
 * `HF_HUB_OFFLINE` is set) a download planned against the hub, which the caller runs with
 * `download()`. Throws {@linkcode ModelNotFoundError} saying where it looked and how to provide
 * the files when none of these works; that takes at most the hub's metadata timeout.
 */
export async function resolveModel(
  spec: string,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
  /** The variant of a published export with several (`--variant`); its default when absent. */
  variant?: string,
): Promise<ResolvedModel> {
  if (await exists(spec)) {
    if (!(await Deno.stat(spec)).isDirectory) {
      return { dir: spec, source: "local", format: fileFormat(spec) };
    }
    try {
      for await (const _ of Deno.readDir(spec)) break;
    } catch (e) {
      throw new ModelNotFoundError(`cannot read the model folder ${spec}: ${(e as Error).message}`);
    }
    return { dir: spec, source: "local", format: await folderFormat(spec) };
  }
  if (looksLikePath(spec)) {
    throw new ModelNotFoundError(
      `the model folder ${spec} does not exist (a hub id looks like ORG/NAME)`,
    );
  }
  const caches = hubCacheDirs(env);
  const looked = [
    `local folder ./${spec}`,
    ...caches.map((c) => `${c}/models--${spec.replace("/", "--")}`),
  ];
  let hubFailure = "";
  if (REPO_ID.test(spec)) {
    for (const cache of caches) {
      const dir = await snapshotIn(cache, spec, variant);
      if (dir) return { dir, source: "hf-cache", format: await folderFormat(dir) };
    }
    const settings = await hubSettings(env);
    if (settings.offline) hubFailure = "HF_HUB_OFFLINE is set, so the hub was not asked";
    else {
      try {
        const plan = await planDownload(spec, caches[0] ?? ".", settings, variant);
        return {
          dir: plan.snapshotDir,
          source: "hub",
          format: plan.format,
          plan,
          download: (options) => downloadSnapshot(plan, settings, options),
        };
      } catch (e) {
        if (!(e instanceof HubError)) throw e;
        hubFailure = e.message;
      }
    }
  }
  throw new ModelNotFoundError(
    `Model '${spec}' was not found. Looked in: ${looked.join(", ")}` +
      (hubFailure ? `; and ${hubFailure}` : "") + `. Provide the files: ` +
      `fetch an ONNX export elsewhere (e.g. \`huggingface-cli download ORG/NAME --local-dir DIR\`) and pass ` +
      `--model DIR, or place it in the Hugging Face cache (set HF_HUB_CACHE)` +
      (REPO_ID.test(spec)
        ? `, or let this server download it (set HF_ENDPOINT to a reachable hub or mirror, HF_TOKEN for gated models).`
        : "."),
  );
}
