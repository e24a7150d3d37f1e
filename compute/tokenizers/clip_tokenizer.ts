/**
 * CLIP tokenization with `@huggingface/tokenizers`, from a model's own `tokenizer/` folder.
 * Optimum/diffusers exports of Stable Diffusion ship the slow-tokenizer files (`vocab.json`,
 * `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`); when no `tokenizer.json` is
 * present, the fast-tokenizer description is assembled from them exactly as transformers'
 * `CLIPConverter` does.
 *
 * @module
 */
import { ModelLoadError } from "../errors.ts";
import { Tokenizer } from "@huggingface/tokenizers";
import { readJsonFile, readTextFile } from "../model/files.ts";

type TokenSpec = string | { content: string } | undefined;
const tokenText = (t: TokenSpec) => typeof t === "string" ? t : t?.content;

/**
 * The fast-tokenizer JSON of a CLIP BPE vocabulary (transformers `CLIPConverter`). A `pad` token
 * other than BOS/EOS is an added token too, as in transformers' `CLIPTokenizer`, which splits it
 * off the text: with SD 2.x's and SDXL's second tokenizer (pad `!`), a `!` in a prompt is id 0,
 * not the BPE token `!</w>` (measured with transformers 4.57: fixtures/reference/clip_tokenizer_ids.py).
 */
export function clipTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  bos: string,
  eos: string,
  pad = eos,
): Record<string, unknown> {
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  return {
    version: "1.0",
    added_tokens: [bos, eos, pad].filter((t, i, all) => all.indexOf(t) === i).map(special),
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: {
            Regex:
              "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
          },
          behavior: "Removed",
          invert: true,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [eos, vocab[eos]],
      cls: [bos, vocab[bos]],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: eos,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** Fixed-length CLIP token ids, padded and truncated as diffusers' `encode_prompt` asks. */
export class ClipTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    /** Sequence length the text encoder expects (77 for CLIP). */
    readonly maxLength: number,
    private readonly padId: number,
  ) {}

  /** Loads `dir` (a `tokenizer/` folder). */
  static async load(dir: string): Promise<ClipTokenizer> {
    const config = await readJsonFile<Record<string, unknown>>(`${dir}/tokenizer_config.json`);
    const padToken = tokenText(config.pad_token as TokenSpec) ?? "<|endoftext|>";
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer.json`));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const vocab = await readJsonFile<Record<string, number>>(`${dir}/vocab.json`);
      const merges = (await readTextFile(`${dir}/merges.txt`)).split("\n")
        .filter((line) => line && !line.startsWith("#version"));
      const bos = tokenText(config.bos_token as TokenSpec) ?? "<|startoftext|>";
      const eos = tokenText(config.eos_token as TokenSpec) ?? "<|endoftext|>";
      json = clipTokenizerJson(vocab, merges, bos, eos, padToken);
    }
    const tokenizer = new Tokenizer(json, config);
    const padId = tokenizer.token_to_id(padToken);
    if (padId === undefined) {
      throw new ModelLoadError(
        `${dir}/tokenizer_config.json: pad_token '${padToken}' is not in the vocabulary`,
      );
    }
    const maxLength = Number(config.model_max_length ?? 77);
    return new ClipTokenizer(tokenizer, maxLength > 1e6 ? 77 : maxLength, padId);
  }

  /** `[BOS, …tokens, EOS, PAD…]` of exactly `maxLength` ids (longer prompts are truncated). */
  encode(text: string): number[] {
    const ids = this.tokenizer.encode(text).ids;
    const eos = ids[ids.length - 1];
    const kept = ids.length > this.maxLength ? [...ids.slice(0, this.maxLength - 1), eos] : ids;
    return [...kept, ...new Array(this.maxLength - kept.length).fill(this.padId)];
  }

  /** Number of prompt tokens (without BOS/EOS) before truncation. */
  countTokens(text: string): number {
    return this.tokenizer.encode(text).ids.length - 2;
  }
}
