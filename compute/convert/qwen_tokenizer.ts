/**
 * A Qwen2 tokenizer folder as `save_pretrained` of the slow `Qwen2Tokenizer` writes it
 * (`vocab.json`, `merges.txt`, `tokenizer_config.json` with its `added_tokens_decoder`) → the
 * `tokenizer.json` our Qwen tokenizer reads, built as transformers' `Qwen2Converter` builds the
 * fast tokenizer: NFC, Qwen2's split pattern then byte-level, byte-level BPE without unknown token.
 *
 * @module
 */
import { QWEN2_SPLIT } from "../../fixtures/builder/qwen_tokenizer_files.ts";
import { ConvertError } from "../errors.ts";

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
    added_tokens_decoder?: Record<string, Record<string, unknown>>;
  };
  const added = Object.entries(config.added_tokens_decoder ?? {}).map(([id, token]) => ({
    id: Number(id),
    content: token.content,
    single_word: token.single_word ?? false,
    lstrip: token.lstrip ?? false,
    rstrip: token.rstrip ?? false,
    normalized: token.normalized ?? false,
    special: token.special ?? false,
  }));
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: false,
    use_regex: false,
  };
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
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
  return new TextEncoder().encode(JSON.stringify(tokenizer));
}
