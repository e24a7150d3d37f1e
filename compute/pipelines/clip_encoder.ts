/**
 * A CLIP tokenizer and its text-encoder graph, run on a list of prompts as diffusers'
 * `encode_prompt` runs them: each padded or truncated to the tokenizer's length, in one batch.
 * SD reads `last_hidden_state`; SDXL reads the penultimate `hidden_states.<layers - 1>` and, from
 * its second encoder, the projected `text_embeds`.
 *
 * @module
 */
import { type Backend, readFloat32, type Session } from "../backends/backend.ts";
import { InterfaceMismatchError } from "../errors.ts";
import { matchInputs, matchOutput } from "../model/graph_interface.ts";
import type { ClipTokenizer } from "../tokenizers/clip_tokenizer.ts";
import type { EncodedText } from "./common.ts";

const FLOAT = ["float32", "float16"] as const;

/** One encoder output for a batch of prompts, with its shape. */
export interface EncoderOutput {
  data: Float32Array;
  dims: readonly number[];
}

/** A CLIP tokenizer and text-encoder session (`input_ids` → the named outputs). */
export class ClipEncoder {
  readonly #idsType: "int32" | "int64";

  /** Checks that `session` (read from `label`) takes `input_ids` and gives every one of `outputs`. */
  constructor(
    readonly label: string,
    readonly backend: Backend,
    readonly tokenizer: ClipTokenizer,
    readonly session: Session,
    outputs: readonly string[],
  ) {
    const inputs = matchInputs(label, session, [
      { name: "input_ids", types: ["int32", "int64"], ranks: [2] },
    ]);
    for (const name of outputs) matchOutput(label, session, name, FLOAT);
    this.#idsType = inputs.get("input_ids")!.type as "int32" | "int64";
  }

  /**
   * The name of the penultimate layer's output (`hidden_states[-2]`): the graph gives
   * `hidden_states.0` (the embeddings) to `hidden_states.<layers>`, or that one layer alone.
   */
  static penultimate(label: string, session: Session): string {
    const layers = session.outputs
      .map((t) => t.name.match(/^hidden_states\.(\d+)$/)?.[1])
      .filter((i) => i !== undefined)
      .map(Number);
    // An export that keeps one layer (webnn/sdxl-turbo's hidden_states.11 and .31) kept the one
    // SDXL reads.
    if (layers.length === 1) return `hidden_states.${layers[0]}`;
    if (layers.length < 2) {
      throw new InterfaceMismatchError(
        `Cannot drive ${label}: SDXL reads the penultimate layer, but the graph gives no hidden_states.<i> outputs (found ${
          session.outputs.map((t) => t.name).join(", ")
        })`,
      );
    }
    return `hidden_states.${Math.max(...layers) - 1}`;
  }

  /** Tokenizes and encodes `prompts` in one batch; returns the requested outputs. */
  async encode(
    prompts: readonly string[],
    outputs: readonly string[],
  ): Promise<{ outputs: Record<string, EncoderOutput>; tokenizeMs: number }> {
    const t = performance.now();
    const ids = prompts.flatMap((text) => this.tokenizer.encode(text));
    const tokenizeMs = performance.now() - t;
    const out = await this.session.run({
      input_ids: this.backend.tensor(
        this.#idsType,
        this.#idsType === "int64" ? BigInt64Array.from(ids, BigInt) : Int32Array.from(ids),
        [prompts.length, this.tokenizer.maxLength],
      ),
    });
    const result: Record<string, EncoderOutput> = {};
    try {
      for (const name of outputs) {
        result[name] = { data: await readFloat32(out[name]), dims: out[name].dims };
      }
    } finally {
      for (const tensor of Object.values(out)) tensor.dispose();
    }
    return { outputs: result, tokenizeMs };
  }
}

/** A `[rows, length, width]` encoder output as {@linkcode EncodedText}. */
export function asEncodedText({ data, dims }: EncoderOutput): EncodedText {
  const [rows, length, width] = dims.length === 3 ? dims : [dims[0], 1, dims[1]];
  return { data, rows, length, width };
}
