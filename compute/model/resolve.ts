/**
 * `--model` resolution: a local folder, or a Hugging Face repo id found in the local hub cache
 * (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`; layout
 * `models--Org--Name/snapshots/<rev>/`, with `refs/main` naming the revision), or else downloaded
 * from the hub into the first of those caches.
 *
 * @module
 */
import { HubError, ModelNotFoundError } from "../errors.ts";
import { exists } from "./files.ts";
import {
  type DownloadPlan,
  type DownloadProgress,
  downloadSnapshot,
  hubSettings,
  planDownload,
} from "./hub_download.ts";

/** Where a model's files are: found on disk, or to be downloaded from the hub first. */
export type ResolvedModel =
  | { dir: string; source: "local" | "hf-cache" }
  | {
    /** The snapshot folder the download fills. */
    dir: string;
    source: "hub";
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

async function snapshotIn(cache: string, repoId: string): Promise<string | undefined> {
  const repoDir = `${cache}/models--${repoId.replace("/", "--")}`;
  if (!(await exists(`${repoDir}/snapshots`))) return undefined;
  try {
    const rev = (await Deno.readTextFile(`${repoDir}/refs/main`)).trim();
    if (await exists(`${repoDir}/snapshots/${rev}/model_index.json`)) {
      return `${repoDir}/snapshots/${rev}`;
    }
  } catch {
    // No refs/main: fall back to the most recently modified snapshot.
  }
  const snapshots: { path: string; mtime: number }[] = [];
  for await (const entry of Deno.readDir(`${repoDir}/snapshots`)) {
    const path = `${repoDir}/snapshots/${entry.name}`;
    if (entry.isDirectory && await exists(`${path}/model_index.json`)) {
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
): Promise<ResolvedModel> {
  if (await exists(spec)) {
    if (!(await Deno.stat(spec)).isDirectory) {
      throw new ModelNotFoundError(`--model ${spec} is a file, expected a model folder`);
    }
    try {
      for await (const _ of Deno.readDir(spec)) break;
    } catch (e) {
      throw new ModelNotFoundError(`cannot read the model folder ${spec}: ${(e as Error).message}`);
    }
    return { dir: spec, source: "local" };
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
      const dir = await snapshotIn(cache, spec);
      if (dir) return { dir, source: "hf-cache" };
    }
    const settings = await hubSettings(env);
    if (settings.offline) hubFailure = "HF_HUB_OFFLINE is set, so the hub was not asked";
    else {
      try {
        const plan = await planDownload(spec, caches[0] ?? ".", settings);
        return {
          dir: plan.snapshotDir,
          source: "hub",
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
