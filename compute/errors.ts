/**
 * The few error classes callers of `compute/` catch by type. Anything else is a fault of the
 * model or of this code, not of the caller's input.
 *
 * @module
 */

/** A model folder or one of its files is missing, unreadable or not a usable ONNX export. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

/** The model could not be found locally. */
export class ModelNotFoundError extends ModelLoadError {
  override name = "ModelNotFoundError";
}

/** The hub could not be reached, refused access, or holds no usable export. */
export class HubError extends ModelLoadError {
  override name = "HubError";
}

/** A graph's declared inputs/outputs are not ones this pipeline can drive. */
export class InterfaceMismatchError extends ModelLoadError {
  override name = "InterfaceMismatchError";
}

/** The requested execution backend cannot run on this machine. */
export class BackendUnavailableError extends Error {
  override name = "BackendUnavailableError";
}

/** Where a generation's values went non-finite: the denoiser's latents or the decoder's pixels. */
export type NonFiniteStage = "latents" | "pixels";

/**
 * The model produced NaN or infinite values, which would have made a black or noise image: its
 * weights (or an adapter merged into them) are broken. Not the caller's input, and the same
 * request fails the same way again.
 */
export class NonFiniteOutputError extends Error {
  override name = "NonFiniteOutputError";
  constructor(readonly stage: NonFiniteStage) {
    super(
      `The model produced non-finite values (NaN or infinity) in its ${
        stage === "latents" ? "denoised latents" : "decoded pixels"
      }, so no image was made; its weights (or a LoRA adapter's) are likely broken.`,
    );
  }
}

/** A generation was cancelled through its `AbortSignal`. */
export class CancelledError extends Error {
  override name = "CancelledError";
}

/**
 * A generation parameter the caller gave is out of range or unusable with this model (an HTTP
 * server answers 400). A `RangeError`, as it was before it had a name of its own.
 */
export class InvalidInputError extends RangeError {
  override name = "InvalidInputError";
  /** The request parameter at fault, when one is (an HTTP error's `param`). */
  param?: string;
}

/**
 * A checkpoint the converter cannot turn into graphs: a missing component or tensor, a shape that
 * does not fit its config, an unknown architecture or field, a malformed or pickled file. Its
 * message is one line naming the file and what was wrong.
 */
export class ConvertError extends ModelLoadError {
  override name = "ConvertError";
}
