/**
 * Reading a model folder's files with errors that name the file and what was expected.
 *
 * @module
 */
import { ModelLoadError } from "../errors.ts";

/** Reads a text file or throws {@linkcode ModelLoadError} naming it. */
export async function readTextFile(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ModelLoadError(`Cannot load ${path}: file not found`);
    }
    throw new ModelLoadError(`Cannot load ${path}: ${(e as Error).message}`);
  }
}

/** Reads and parses a JSON file or throws {@linkcode ModelLoadError} naming it. */
export async function readJsonFile<T>(path: string): Promise<T> {
  const text = await readTextFile(path);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new ModelLoadError(`Cannot load ${path}: invalid JSON (${(e as Error).message})`);
  }
}

/** Whether a path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
