/**
 * How a request ended, for the access log: what a generation made and, for a stream, the status
 * the stream ended with. The request log creates one per request and reads it; a generation
 * endpoint is the one writer.
 *
 * @module
 */
import type { GenerateResult, ImageFormat } from "../../compute/mod.ts";

/** Encoded images plus what the response reports. */
export interface Generated {
  result: GenerateResult;
  /**
   * The seed used, as responses and the log report it: a JSON number (drawn seeds are 32-bit; a
   * given one arrived as a JSON number), converted from the engine's bigint once, in run.ts.
   */
  seed: number;
  images: Uint8Array[];
  format: ImageFormat;
}

/** One request's outcome. */
export class Outcome {
  #generated?: Generated;
  #stream?: PromiseWithResolvers<number>;

  /** What the generation made, once it is done. */
  get generated(): Generated | undefined {
    return this.#generated;
  }

  /** Records what the generation made. */
  made(generated: Generated): void {
    this.#generated = generated;
  }

  /** Marks the response as a stream; the returned function settles the status it ended with. */
  streaming(): (status: number) => void {
    this.#stream = Promise.withResolvers<number>();
    return this.#stream.resolve;
  }

  /** The status to log: a stream's once it ends, else the status the response was sent with. */
  status(sent: number): number | Promise<number> {
    return this.#stream?.promise ?? sent;
  }
}
