/**
 * Qwen2-family tokenization (Qwen-Image's Qwen2.5-VL, Z-Image's Qwen3) with
 * `@huggingface/tokenizers`, from the model's `tokenizer.json` and `tokenizer_config.json`.
 * Special tokens such as `<|im_start|>` in the text are matched as added tokens.
 *
 * @module
 */
import { ModelLoadError } from "../errors.ts";
import { Tokenizer } from "@huggingface/tokenizers";
import { readJsonFile } from "../model/files.ts";

/** A loaded Qwen tokenizer. */
export class QwenTokenizer {
  private constructor(private readonly tokenizer: Tokenizer, readonly padId: number) {}

  /** Loads `dir` (a `tokenizer/` folder). */
  static async load(dir: string): Promise<QwenTokenizer> {
    const json = await readJsonFile<Record<string, unknown>>(`${dir}/tokenizer.json`);
    const config = await readJsonFile<Record<string, unknown>>(`${dir}/tokenizer_config.json`);
    const tokenizer = new Tokenizer(json, config);
    const pad = typeof config.pad_token === "string" ? config.pad_token : "<|endoftext|>";
    const padId = tokenizer.token_to_id(pad);
    if (padId === undefined) {
      throw new ModelLoadError(
        `${dir}/tokenizer_config.json: pad_token '${pad}' is not in the vocabulary`,
      );
    }
    return new QwenTokenizer(tokenizer, padId);
  }

  /** Token ids of `text` (Qwen adds no BOS/EOS), truncated to `maxLength`. */
  encode(text: string, maxLength = Infinity): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids.slice(0, maxLength);
  }

  /** Pads rows to the longest with `padId`; returns ids and a 1/0 attention mask, row-major. */
  padBatch(rows: number[][]): { ids: number[]; mask: number[]; length: number } {
    const length = Math.max(...rows.map((r) => r.length));
    const ids: number[] = [], mask: number[] = [];
    for (const row of rows) {
      ids.push(...row, ...Array(length - row.length).fill(this.padId));
      mask.push(...Array(row.length).fill(1), ...Array(length - row.length).fill(0));
    }
    return { ids, mask, length };
  }
}
