/**
 * Images kept for `response_format: "url"`: bounded in bytes (`--max-image-store-mb`) and age
 * (1 hour), oldest dropped first, served from this server.
 *
 * @module
 */

interface StoredImage {
  bytes: Uint8Array;
  mime: string;
  expires: number;
}

/** A bounded, expiring in-memory image store. */
export class ImageStore {
  readonly #images = new Map<string, StoredImage>();
  #bytes = 0;

  constructor(readonly maxBytes = 512 * 1024 * 1024, readonly ttlMs = 60 * 60 * 1000) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether an image of `size` bytes can be kept at all. */
  fits(size: number): boolean {
    return size <= this.maxBytes;
  }

  /** Stores an image (dropping the oldest to make room) and returns its id. */
  put(bytes: Uint8Array, mime: string): string {
    this.#evict();
    while (this.#bytes + bytes.length > this.maxBytes && this.#images.size > 0) {
      this.#delete(this.#images.keys().next().value!);
    }
    const id = crypto.randomUUID().replaceAll("-", "");
    this.#images.set(id, { bytes, mime, expires: Date.now() + this.ttlMs });
    this.#bytes += bytes.length;
    return id;
  }

  /** The image, unless unknown or expired. */
  get(id: string): StoredImage | undefined {
    this.#evict();
    return this.#images.get(id);
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
