import assert from "node:assert/strict";
import { ClipTokenizer } from "./clip_tokenizer.ts";

const SD15 = new URL("../../fixtures/models/sd15-tiny/tokenizer", import.meta.url).pathname;
const TURBO = new URL("../../fixtures/models/sd-turbo-tiny/tokenizer", import.meta.url).pathname;

Deno.test("CLIP tokenizer pads to 77 with BOS/EOS and the model's pad token", async () => {
  const sd15 = await ClipTokenizer.load(SD15);
  const ids = sd15.encode("A Red  cat");
  const vocab = JSON.parse(await Deno.readTextFile(`${SD15}/vocab.json`));
  assert.equal(ids.length, 77);
  assert.deepEqual(ids.slice(0, 5), [
    vocab["<|startoftext|>"],
    vocab["a</w>"],
    vocab["red</w>"],
    vocab["cat</w>"],
    vocab["<|endoftext|>"],
  ]);
  assert.equal(ids[76], vocab["<|endoftext|>"]); // SD 1.x pads with EOS
  const turbo = await ClipTokenizer.load(TURBO);
  assert.equal(turbo.encode("a cat")[76], vocab["!"]); // SD 2.x / Turbo pad with "!"
});

Deno.test("CLIP tokenizer truncates long prompts and keeps EOS last", async () => {
  const tok = await ClipTokenizer.load(SD15);
  const ids = tok.encode("dragon ".repeat(200));
  assert.equal(ids.length, 77);
  assert.equal(ids[76], tok.encode("")[1]);
  assert.equal(tok.countTokens("dragon ".repeat(200)), 200);
  // Unknown words still tokenize (byte-level pieces).
  assert.ok(tok.countTokens("xyzzy") >= 1);
});

Deno.test("CLIP tokenizer reports a missing folder by file name", async () => {
  await assert.rejects(
    () => ClipTokenizer.load("/nonexistent/tokenizer"),
    /tokenizer_config\.json: file not found/,
  );
});
