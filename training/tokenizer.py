"""CLIP-format BPE tokenizer files for the scene grammar, and the same tokenization in Python.

The vocabulary is CLIP's layout: the 256 byte-level symbols (GPT-2 `bytes_to_unicode` order), the
same 256 with the end-of-word suffix `</w>`, one merged token per merge (so every grammar word is a
single whole-word token `word</w>`), then `<|startoftext|>` and `<|endoftext|>`. Any other text
still tokenizes: unknown words fall back to byte-level pieces. The serving side reads these files
with compute/tokenizers/clip_tokenizer.ts; `encode` below must give the same ids for captions of
the grammar (a Deno test compares them).
"""

import json
import re

import scenes

MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
PAD = EOS  # SD 1.x style: pad with end-of-text.

EXTRA_WORDS = ["and", "with", "of", "an", "one", "shape", "shapes", "image", "picture", "big",
               "tiny", "corner", "side", "upper", "lower", "colour", "color", "dark", "light"]


def grammar_words() -> list:
    words = set()
    for text in [*scenes.COLOURS, *scenes.SHAPES, *scenes.PLURALS.values(), *scenes.SIZES,
                 *scenes.COUNT_WORDS.values(), *scenes.POSITIONS,
                 *[p for ps in scenes.POSITION_PHRASES.values() for p in ps],
                 "on a background", *EXTRA_WORDS]:
        words.update(text.split())
    return sorted(words)


def bytes_to_unicode() -> list:
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping = {b: b for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = 256 + n
            n += 1
    order = printable + [b for b in range(256) if b not in printable]
    return [chr(mapping[b]) for b in order]


def bpe(symbols: list, ranks: dict) -> list:
    symbols = list(symbols)
    while True:
        best, best_rank = -1, None
        for i in range(len(symbols) - 1):
            r = ranks.get((symbols[i], symbols[i + 1]))
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            return symbols
        symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]


def build() -> tuple:
    """(vocab, merges) of the grammar tokenizer."""
    vocab = {}

    def add(tok):
        if tok not in vocab:
            vocab[tok] = len(vocab)

    base = bytes_to_unicode()
    for t in base:
        add(t)
    for t in base:
        add(t + "</w>")
    merges, ranks = [], {}
    for word in grammar_words():
        symbols = list(word)
        symbols[-1] += "</w>"
        while True:
            pieces = bpe(symbols, ranks)
            if len(pieces) == 1:
                break
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(f"{pair[0]} {pair[1]}")
            add(pair[0] + pair[1])
    add(BOS)
    add(EOS)
    return vocab, merges


def files() -> dict:
    """File name -> text of a diffusers `tokenizer/` folder."""
    vocab, merges = build()
    token = lambda c: {"content": c, "lstrip": False, "normalized": True, "rstrip": False,
                       "single_word": False}
    special = {"bos_token": token(BOS), "eos_token": token(EOS), "pad_token": PAD,
               "unk_token": token(EOS)}
    config = {"add_prefix_space": False, "bos_token": token(BOS), "do_lower_case": True,
              "eos_token": token(EOS), "errors": "replace", "model_max_length": MAX_LENGTH,
              "pad_token": PAD, "tokenizer_class": "CLIPTokenizer", "unk_token": token(EOS)}
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2) + "\n",
    }


class Tokenizer:
    """Ids exactly as the served pipeline makes them, for text made of grammar words."""

    def __init__(self):
        self.vocab, _ = build()
        self.bos, self.eos, self.pad = self.vocab[BOS], self.vocab[EOS], self.vocab[PAD]

    def encode(self, text: str) -> list:
        words = re.findall(r"[a-z]+", text.lower())
        ids = [self.bos] + [self.vocab[w + "</w>"] for w in words] + [self.eos]
        if len(ids) > MAX_LENGTH:
            ids = ids[:MAX_LENGTH - 1] + [self.eos]
        return ids + [self.pad] * (MAX_LENGTH - len(ids))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


if __name__ == "__main__":
    # Writes the ids the trainer uses for a sample of captions, for the Deno test that compares
    # them with the serving tokenizer (compute/tokenizers/clip_tokenizer.ts).
    import random
    import sys
    rng = random.Random(5)
    captions = ["", "a red circle on a blue background", "an orange star in the center on a "
                "white background", "THREE   Small purple hearts on a black background"]
    for _ in range(40):
        captions.append(scenes.caption_of(scenes.sample_scene(rng), rng)[0])
    t = Tokenizer()
    with open(sys.argv[1], "w") as f:
        json.dump([{"text": c, "ids": t.encode(c)} for c in captions], f)
        f.write("\n")
