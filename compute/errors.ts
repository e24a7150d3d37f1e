/**
 * The few error classes callers of `compute/` catch by type. Everything else is a built-in
 * `TypeError` (wrong shapes or dtypes) or `RangeError` (values out of range).
 *
 * @module
 */

/** A model folder or one of its files is missing, unreadable or not a usable ONNX export. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

/** A graph's declared inputs/outputs are not ones this pipeline can drive. */
export class InterfaceMismatchError extends ModelLoadError {
  override name = "InterfaceMismatchError";
}

/** The requested execution backend cannot run on this machine. */
export class BackendUnavailableError extends Error {
  override name = "BackendUnavailableError";
}

/** A generation was cancelled through its `AbortSignal`. */
export class CancelledError extends Error {
  override name = "CancelledError";
}
