import assert from "node:assert/strict";
import { ClipTokenizer } from "./clip_tokenizer.ts";
import { CLIP_VOCAB_SIZE, clipTokenizerFiles, openAiClipVocabulary } from "./clip_vocabulary.ts";

/** Ids recorded from OpenAI's and transformers' own tokenizers (fixtures/reference/clip_tokenizer_ids.py). */
const RECORDED: {
  prompts: { prompt: string; ids: number[]; ids_pad_bang?: number[] }[];
} = JSON.parse(
  await Deno.readTextFile(
    new URL("../../fixtures/reference/data/clip_tokenizer_ids.json", import.meta.url),
  ),
);

async function tokenizer(pad: string): Promise<ClipTokenizer> {
  const dir = await Deno.makeTempDir();
  try {
    for (const [file, bytes] of clipTokenizerFiles(pad)) {
      await Deno.writeFile(`${dir}/${file}`, bytes);
    }
    return await ClipTokenizer.load(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("OpenAI's CLIP vocabulary: 49 408 ids, specials last, as the text encoders' embeddings", () => {
  const { vocab, merges } = openAiClipVocabulary();
  assert.equal(Object.keys(vocab).length, CLIP_VOCAB_SIZE);
  assert.equal(merges.length, CLIP_VOCAB_SIZE - 514);
  assert.equal(vocab["!"], 0);
  assert.equal(vocab["!</w>"], 256);
  assert.equal(vocab["<|startoftext|>"], 49406);
  assert.equal(vocab["<|endoftext|>"], 49407);
});

Deno.test("the converter's CLIP tokenizer files tokenize as OpenAI's and transformers' tokenizers do", async () => {
  const eot = await tokenizer("<|endoftext|>");
  const bang = await tokenizer("!");
  assert.ok(RECORDED.prompts.length >= 18);
  for (const { prompt, ids, ids_pad_bang } of RECORDED.prompts) {
    const padded = (x: number[], pad: number) => [...x, ...Array(77 - x.length).fill(pad)];
    assert.deepEqual(eot.encode(prompt), padded(ids, 49407), prompt);
    assert.deepEqual(bang.encode(prompt), padded(ids_pad_bang ?? ids, 0), `${prompt} (pad "!")`);
  }
});
