/**
 * Images kept for `response_format: "url"`, bounded in bytes (`--max-image-store-mb`) and age
 * (1 hour), oldest dropped first. In this process's memory by default; in a directory with
 * `--image-store-dir`, which several replicas can share (a volume), so that any of them serves a
 * URL another made.
 *
 * @module
 */

/** An image as stored. */
export interface StoredImage {
  bytes: Uint8Array;
  mime: string;
}

/** Where `url` images live. */
export interface ImageStore {
  /** Stores an image (dropping the oldest to stay in bounds) and returns its id. */
  put(bytes: Uint8Array, mime: string): Promise<string>;
  /** The image, unless unknown or expired. */
  get(id: string): Promise<StoredImage | undefined>;
}

const HOUR = 60 * 60 * 1000;
const newId = () => crypto.randomUUID().replaceAll("-", "");

/** The default: a bounded, expiring store in memory. */
export class MemoryImageStore implements ImageStore {
  readonly #images = new Map<string, StoredImage & { expires: number }>();
  #bytes = 0;

  constructor(readonly maxBytes = 512 * 1024 * 1024, readonly ttlMs = HOUR) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  put(bytes: Uint8Array, mime: string): Promise<string> {
    this.#evict();
    while (this.#bytes + bytes.length > this.maxBytes && this.#images.size > 0) {
      this.#delete(this.#images.keys().next().value!);
    }
    const id = newId();
    this.#images.set(id, { bytes, mime, expires: Date.now() + this.ttlMs });
    this.#bytes += bytes.length;
    return Promise.resolve(id);
  }

  get(id: string): Promise<StoredImage | undefined> {
    this.#evict();
    return Promise.resolve(this.#images.get(id));
  }

  #delete(id: string): void {
    this.#bytes -= this.#images.get(id)?.bytes.length ?? 0;
    this.#images.delete(id);
  }

  #evict(): void {
    const now = Date.now();
    for (const [id, image] of this.#images) if (image.expires <= now) this.#delete(id);
  }
}

const EXTENSIONS: Record<string, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/webp": "webp",
};
const MIMES = Object.fromEntries(Object.entries(EXTENSIONS).map(([m, e]) => [e, m]));

/**
 * Files `<id>.<ext>` in a directory (shared by replicas). Age comes from the file's mtime; every
 * `put` prunes expired files and then the oldest until the directory fits in `maxBytes`, so any
 * replica keeps the shared directory in bounds. Ids are 32 hex digits, so a request can name no
 * other file.
 */
export class DirectoryImageStore implements ImageStore {
  constructor(
    readonly dir: string,
    readonly maxBytes = 512 * 1024 * 1024,
    readonly ttlMs = HOUR,
  ) {
    Deno.mkdirSync(dir, { recursive: true });
  }

  async put(bytes: Uint8Array, mime: string): Promise<string> {
    const id = newId();
    const file = `${this.dir}/${id}.${EXTENSIONS[mime] ?? "bin"}`;
    // Written under a temporary name and renamed, so a reader never sees half a file.
    await Deno.writeFile(`${file}.part`, bytes);
    await Deno.rename(`${file}.part`, file);
    await this.#prune();
    return id;
  }

  async get(id: string): Promise<StoredImage | undefined> {
    if (!/^[0-9a-f]{32}$/.test(id)) return undefined;
    for (const [ext, mime] of Object.entries(MIMES)) {
      const file = `${this.dir}/${id}.${ext}`;
      try {
        const info = await Deno.stat(file);
        if ((info.mtime?.getTime() ?? 0) + this.ttlMs <= Date.now()) return undefined;
        return { bytes: await Deno.readFile(file), mime };
      } catch {
        continue;
      }
    }
    return undefined;
  }

  async #prune(): Promise<void> {
    const files: { path: string; size: number; mtime: number }[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.isFile || entry.name.endsWith(".part")) continue;
      const path = `${this.dir}/${entry.name}`;
      try {
        const info = await Deno.stat(path);
        files.push({ path, size: info.size, mtime: info.mtime?.getTime() ?? 0 });
      } catch { /* removed by another replica */ }
    }
    files.sort((a, b) => a.mtime - b.mtime);
    let total = files.reduce((sum, f) => sum + f.size, 0);
    const now = Date.now();
    for (const f of files) {
      if (f.mtime + this.ttlMs > now && total <= this.maxBytes) break;
      await Deno.remove(f.path).catch(() => {});
      total -= f.size;
    }
  }
}
