/**
 * Which queued requests run together: the oldest waiting request always goes next, joined by
 * later ones with the same batch key while the batch has room (counted in images).
 *
 * @module
 */

/** A queued request as the batcher sees it. */
export interface Queued {
  id: number;
  key: string;
  images: number;
}

/**
 * Removes and returns the next batch from `queue` (arrival order): its head plus every later
 * request of the same key that fits in `maxImages`. A head larger than `maxImages` runs alone.
 */
export function takeBatch<Q extends Queued>(queue: Q[], maxImages: number): Q[] {
  if (queue.length === 0) return [];
  const head = queue[0];
  const batch = [head];
  let images = head.images;
  for (const q of queue.slice(1)) {
    if (q.key === head.key && images + q.images <= maxImages) {
      batch.push(q);
      images += q.images;
    }
  }
  const taken = new Set(batch);
  queue.splice(0, queue.length, ...queue.filter((q) => !taken.has(q)));
  return batch;
}

/** Whether the queue already holds a full batch for its head (no reason to wait for more). */
export function headBatchIsFull(queue: readonly Queued[], maxImages: number): boolean {
  if (queue.length === 0) return false;
  const images = queue.filter((q) => q.key === queue[0].key).reduce((s, q) => s + q.images, 0);
  return images >= maxImages;
}
