/**
 * `size` strings, with vLLM-Omni's `parse_size` messages.
 *
 * @module
 */
import { badRequest } from "./errors.ts";

/** Parses `WIDTHxHEIGHT` (an upper-case X is accepted too) or throws a 400. */
export function parseSize(size: string): { width: number; height: number } {
  const parts = size.toLowerCase().split("x");
  if (size.trim() === "") {
    throw badRequest(
      `Size must be a non-empty string in format 'WIDTHxHEIGHT' (e.g., '1024x1024'), got: ${size}`,
      "size",
    );
  }
  if (parts.length !== 2) {
    throw badRequest(
      `Invalid size format: '${size}'. Expected format: 'WIDTHxHEIGHT' (e.g., '1024x1024'). Did you mean to use 'x' as separator?`,
      "size",
    );
  }
  const [w, h] = parts.map((p) => p.trim());
  if (!/^[+-]?\d+$/.test(w) || !/^[+-]?\d+$/.test(h)) {
    throw badRequest(`Invalid size format: '${size}'. Width and height must be integers.`, "size");
  }
  const width = Number(w), height = Number(h);
  if (width <= 0 || height <= 0) {
    throw badRequest(
      `Invalid size: ${width}x${height}. Width and height must be positive integers.`,
      "size",
    );
  }
  return { width, height };
}
