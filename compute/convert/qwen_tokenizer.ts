/**
 * A Qwen2 tokenizer folder as `save_pretrained` of the slow `Qwen2Tokenizer` writes it
 * (`vocab.json`, `merges.txt`, `tokenizer_config.json` with its `added_tokens_decoder`) → the
 * `tokenizer.json` our Qwen tokenizer reads, built as transformers' `Qwen2Converter` builds the
 * fast tokenizer: NFC, Qwen2's split pattern then byte-level, byte-level BPE without unknown token.
 *
 * @module
 */
import { ConvertError } from "../errors.ts";

/** Qwen2's pre-tokenizer split pattern (tokenizer.json of Qwen2/2.5/3). */
export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** An added (special) token as `tokenizer.json` lists it. */
export interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/**
 * The fast tokenizer of a Qwen2-family byte-level BPE, as transformers' `Qwen2Converter` builds
 * it: NFC, Qwen2's split pattern then byte-level, BPE without unknown token.
 */
export function qwen2TokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  addedTokens: AddedToken[],
): Record<string, unknown> {
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: false,
    use_regex: false,
  };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_SPLIT }, behavior: "Isolated", invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** `tokenizer.json` from the slow tokenizer's files (name → bytes); `label` names the folder. */
export function qwenTokenizerJson(label: string, files: Map<string, Uint8Array>): Uint8Array {
  const text = (name: string) => {
    const bytes = files.get(name);
    if (!bytes) {
      throw new ConvertError(`${label}: no tokenizer.json, and no ${name} to build it from`);
    }
    return new TextDecoder().decode(bytes);
  };
  const json = (name: string) => {
    try {
      return JSON.parse(text(name));
    } catch (e) {
      if (e instanceof ConvertError) throw e;
      throw new ConvertError(`${label}/${name}: not valid JSON (${(e as Error).message})`);
    }
  };
  const vocab = json("vocab.json") as Record<string, number>;
  const merges = text("merges.txt").split("\n").filter((line) =>
    line.trim() !== "" && !line.startsWith("#version")
  );
  const config = json("tokenizer_config.json") as {
    added_tokens_decoder?: Record<string, Partial<AddedToken>>;
  };
  const added = Object.entries(config.added_tokens_decoder ?? {}).map(([id, token]) => ({
    id: Number(id),
    content: token.content ?? "",
    single_word: token.single_word ?? false,
    lstrip: token.lstrip ?? false,
    rstrip: token.rstrip ?? false,
    normalized: token.normalized ?? false,
    special: token.special ?? false,
  }));
  return new TextEncoder().encode(JSON.stringify(qwen2TokenizerJson(vocab, merges, added)));
}
