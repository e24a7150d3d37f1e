/**
 * Images kept for `response_format: "url"`: bounded in count and age, served from this server.
 *
 * @module
 */

interface StoredImage {
  bytes: Uint8Array;
  mime: string;
  expires: number;
}

/** A bounded, expiring in-memory image store (oldest evicted first). */
export class ImageStore {
  readonly #images = new Map<string, StoredImage>();

  constructor(readonly maxImages = 256, readonly ttlMs = 60 * 60 * 1000) {}

  /** Stores an image and returns its id. */
  put(bytes: Uint8Array, mime: string): string {
    this.#evict();
    while (this.#images.size >= this.maxImages) {
      this.#images.delete(this.#images.keys().next().value!);
    }
    const id = crypto.randomUUID().replaceAll("-", "");
    this.#images.set(id, { bytes, mime, expires: Date.now() + this.ttlMs });
    return id;
  }

  /** The image, unless unknown or expired. */
  get(id: string): StoredImage | undefined {
    this.#evict();
    return this.#images.get(id);
  }

  #evict(): void {
    const now = Date.now();
    for (const [id, image] of this.#images) if (image.expires <= now) this.#images.delete(id);
  }
}
