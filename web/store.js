// @ts-check
/// <reference lib="dom" />
/**
 * What the playground keeps in this browser across reloads: the form's settings (localStorage,
 * one small JSON object) and the gallery's images with the request that made each
 * (IndexedDB, as Blobs, so that large images do not count against localStorage's few MB).
 */

const SETTINGS_KEY = "denoise-settings";
const DB_NAME = "denoise-playground";
const STORE = "gallery";

/**
 * A gallery entry: one image and what reproduces it.
 * @typedef {{ id?: number, request: Record<string, unknown>, index: number, n: number,
 *   seed: number, mime: string, blob: Blob, seconds: number,
 *   timings?: Record<string, number> }} GalleryImage
 */

/** @returns {Record<string, string | boolean>} */
export function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
    return saved && typeof saved === "object" ? saved : {};
  } catch {
    return {};
  }
}

/** @param {Record<string, string | boolean>} settings */
export function saveSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

export function forgetSettings() {
  localStorage.removeItem(SETTINGS_KEY);
}

/** @type {Promise<IDBDatabase> | undefined} */
let opened;

/** @returns {Promise<IDBDatabase>} */
function database() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () =>
      request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

/**
 * Runs one request on the gallery store and resolves with its result once the transaction
 * has committed.
 * @template T
 * @param {IDBTransactionMode} mode
 * @param {(store: IDBObjectStore) => IDBRequest<T>} operation
 * @returns {Promise<T>}
 */
async function withStore(mode, operation) {
  const tx = (await database()).transaction(STORE, mode);
  const request = operation(tx.objectStore(STORE));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = tx.onabort = () => reject(tx.error ?? request.error);
  });
}

/**
 * Keeps an image; resolves with its id.
 * @param {GalleryImage} image
 * @returns {Promise<number>}
 */
export async function saveImage(image) {
  return Number(await withStore("readwrite", (store) => store.add(image)));
}

/**
 * Every kept image, oldest first.
 * @returns {Promise<GalleryImage[]>}
 */
export function savedImages() {
  return withStore("readonly", (store) => store.getAll());
}

/** Forgets every kept image. */
export async function clearImages() {
  await withStore("readwrite", (store) => store.clear());
}
