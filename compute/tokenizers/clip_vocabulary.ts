/**
 * CLIP's BPE vocabulary as OpenAI publishes it (`openai_clip/bpe_simple_vocab_16e6.txt.gz`, from
 * github.com/openai/CLIP under the MIT licence in `openai_clip/LICENSE`), turned into the
 * tokenizer files a diffusers `tokenizer/` folder holds (`vocab.json`, `merges.txt`,
 * `tokenizer_config.json`, `special_tokens_map.json`), which `ClipTokenizer` (`clip_tokenizer.ts`) reads.
 *
 * A single-file checkpoint carries no tokenizer; every Stable Diffusion text encoder (CLIP ViT-L/14,
 * OpenCLIP ViT-H/14 and ViT-bigG/14) was trained on this one vocabulary, so the converter writes
 * these files for it. The vocabulary is assembled as OpenAI's `simple_tokenizer.py` does: the
 * file's lines 1 … 48 894 are the merges, in rank order; the ids are the 256 byte symbols (GPT-2's
 * byte-to-unicode table, printable bytes first), the same with the end-of-word mark `</w>`, one
 * token per merge, then `<|startoftext|>` and `<|endoftext|>` (49 406 and 49 407).
 *
 * @module
 */
import { gunzipSync } from "node:zlib";

/** The vocabulary's size (the text encoders' `vocab_size`). */
export const CLIP_VOCAB_SIZE = 49408;

/** How many merges OpenAI's tokenizer reads from the file (49 152 − 256 − 2). */
const MERGES = CLIP_VOCAB_SIZE - 512 - 2;

/** The 256 byte symbols in id order (the byte-to-unicode table GPT-2's and CLIP's BPE share). */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) symbols.push(String.fromCodePoint(256 + n++));
  }
  return symbols;
}

let cached: { vocab: Record<string, number>; merges: string[] } | undefined;

/** OpenAI's CLIP vocabulary: token → id, and the merges in rank order (`"a b"`). */
export function openAiClipVocabulary(): { vocab: Record<string, number>; merges: string[] } {
  if (cached) return cached;
  const gz = Deno.readFileSync(
    new URL("./openai_clip/bpe_simple_vocab_16e6.txt.gz", import.meta.url),
  );
  const merges = new TextDecoder().decode(gunzipSync(gz)).split("\n").slice(1, MERGES + 1);
  const bytes = byteSymbols();
  const tokens = [
    ...bytes,
    ...bytes.map((s) => `${s}</w>`),
    ...merges.map((m) => m.replace(" ", "")),
    "<|startoftext|>",
    "<|endoftext|>",
  ];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => vocab[t] = i);
  cached = { vocab, merges };
  return cached;
}

/**
 * The files of a diffusers `tokenizer/` folder for OpenAI's CLIP vocabulary, padding with
 * `padToken`: `<|endoftext|>` for CLIP ViT-L/14 (SD 1.x, SDXL's first tokenizer), `!` for the
 * OpenCLIP encoders (SD 2.x, SDXL's second), whose training padded with id 0. Paths relative to
 * the folder → bytes.
 */
export function clipTokenizerFiles(padToken: string): Map<string, Uint8Array> {
  const { vocab, merges } = openAiClipVocabulary();
  const special = (content: string) => ({
    content,
    lstrip: false,
    normalized: true,
    rstrip: false,
    single_word: false,
  });
  const json = (value: unknown) => JSON.stringify(value, null, 2) + "\n";
  const files: Record<string, string> = {
    "vocab.json": JSON.stringify(vocab) + "\n",
    "merges.txt": `#version: 0.2\n${merges.join("\n")}\n`,
    "tokenizer_config.json": json({
      _source: "denoise: openai/CLIP's bpe_simple_vocab_16e6.txt.gz (MIT)",
      add_prefix_space: false,
      bos_token: special("<|startoftext|>"),
      do_lower_case: true,
      eos_token: special("<|endoftext|>"),
      errors: "replace",
      model_max_length: 77,
      pad_token: padToken,
      tokenizer_class: "CLIPTokenizer",
      unk_token: special("<|endoftext|>"),
    }),
    "special_tokens_map.json": json({
      bos_token: special("<|startoftext|>"),
      eos_token: special("<|endoftext|>"),
      pad_token: padToken,
      unk_token: special("<|endoftext|>"),
    }),
  };
  const encoder = new TextEncoder();
  return new Map(Object.entries(files).map(([p, text]) => [p, encoder.encode(text)]));
}

if (import.meta.main) {
  // `deno run -A compute/tokenizers/clip_vocabulary.ts DIR`: writes DIR/pad-eot and DIR/pad-bang
  // (fixtures/reference/clip_tokenizer_ids.py reads them with transformers).
  const [dir] = Deno.args;
  for (const [name, pad] of [["pad-eot", "<|endoftext|>"], ["pad-bang", "!"]]) {
    Deno.mkdirSync(`${dir}/${name}`, { recursive: true });
    for (const [file, bytes] of clipTokenizerFiles(pad)) {
      Deno.writeFileSync(`${dir}/${name}/${file}`, bytes);
    }
  }
}
