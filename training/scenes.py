"""The scene world: procedural scenes of flat-coloured shapes, and their captions.

A scene is a background colour and one to three objects. One object has a colour, a shape, a size
class and one of nine anchor positions; two or three objects share colour, shape and size and are
scattered without overlap. `render` draws a scene with PIL (4x supersampled, so edges are
anti-aliased); `caption` writes one of its English captions, naming a random subset of what can be
named. The grammar is written down in models/shapes-tiny/README.md.

Everything is a pure function of a `random.Random`, so the data is deterministic given the seed.
"""

import json
import math
import random
import re

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 32, 32),
    "green": (34, 168, 58),
    "blue": (36, 72, 220),
    "yellow": (244, 220, 40),
    "white": (246, 246, 246),
    "black": (16, 16, 16),
    "orange": (246, 140, 24),
    "purple": (142, 46, 184),
}
SHAPES = ["circle", "square", "triangle", "star", "heart", "ring"]
PLURALS = {s: s + "s" for s in SHAPES}
# Anchor centres as fractions of (width, height).
POSITIONS = {
    "centre": (0.5, 0.5),
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
}
# Radius (half the bounding box side) as a fraction of the shorter image side.
SIZES = {"small": (0.10, 0.12), "medium": (0.14, 0.165), "large": (0.19, 0.21)}
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
POSITION_PHRASES = {
    "centre": ["in the centre", "in the center", "in the middle"],
    "left": ["on the left"],
    "right": ["on the right"],
    "top": ["at the top"],
    "bottom": ["at the bottom"],
    "top left": ["in the top left"],
    "top right": ["in the top right"],
    "bottom left": ["in the bottom left"],
    "bottom right": ["in the bottom right"],
}


def sample_scene(rng: random.Random, multi_share: float = 0.2) -> dict:
    """A random scene: background, objects, and the attribute tuple its captions may name.
    `multi_share` of scenes hold two or three objects (half each), the rest one."""
    colour = rng.choice(list(COLOURS))
    background = rng.choice([c for c in COLOURS if c != colour])
    shape = rng.choice(SHAPES)
    count = 1 if rng.random() < 1 - multi_share else rng.choice([2, 3])
    if count == 1:
        size = rng.choice(["small", "medium", "large"])
        position = rng.choice(list(POSITIONS))
        ax, ay = POSITIONS[position]
        r = rng.uniform(*SIZES[size])
        objects = [(ax + rng.uniform(-0.04, 0.04), ay + rng.uniform(-0.04, 0.04), r)]
    else:
        size = rng.choice(["small", "medium"])
        position = None
        objects = scatter(rng, count, SIZES[size])
    return {
        "colour": colour,
        "background": background,
        "shape": shape,
        "count": count,
        "size": size,
        "position": position,
        "objects": objects,
    }


def scatter(rng: random.Random, count: int, radius_range) -> list:
    """`count` non-overlapping (x, y, r) inside the unit square."""
    while True:
        objects = []
        for _ in range(200):
            r = rng.uniform(*radius_range)
            x, y = rng.uniform(r + 0.03, 1 - r - 0.03), rng.uniform(r + 0.03, 1 - r - 0.03)
            if all(math.hypot(x - a, y - b) > r + c + 0.04 for a, b, c in objects):
                objects.append((x, y, r))
                if len(objects) == count:
                    return objects


def caption_of(attrs: dict, rng: random.Random | None = None) -> tuple:
    """One caption of a scene and the attribute tuple it names:
    (count, size|None, colour, shape, position|None, background). With `rng`, size and position
    are each named or left out at random (and a phrasing is picked); without, all are named."""
    count = attrs["count"]
    name_size = attrs["size"] in ("small", "large") and (rng is None or rng.random() < 0.75)
    name_position = attrs["position"] is not None and (rng is None or rng.random() < 0.8)
    words = [COUNT_WORDS[count]]
    if name_size:
        words.append(attrs["size"])
    words.append(attrs["colour"])
    words.append(attrs["shape"] if count == 1 else PLURALS[attrs["shape"]])
    if name_position:
        phrases = POSITION_PHRASES[attrs["position"]]
        words.append(rng.choice(phrases) if rng else phrases[0])
    words += ["on", "a", attrs["background"], "background"]
    # "an" before a vowel (usually; "a" sometimes, as people type it).
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou" and (rng is None or rng.random() < 0.8):
            words[i] = "an"
    key = (count, attrs["size"] if name_size else None, attrs["colour"], attrs["shape"],
           attrs["position"] if name_position else None, attrs["background"])
    return " ".join(words), key


def star_points(cx, cy, r, points=5, inner=0.45):
    out = []
    for i in range(2 * points):
        a = -math.pi / 2 + i * math.pi / points
        rr = r if i % 2 == 0 else r * inner
        out.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    # Centre the star's bounding box vertically on cy.
    ys = [p[1] for p in out]
    dy = cy - (min(ys) + max(ys)) / 2
    return [(x, y + dy) for x, y in out]


def heart_points(cx, cy, r, n=64):
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x, y))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    sx = 2 * r / (max(xs) - min(xs))
    sy = 2 * r / (max(ys) - min(ys))
    mx, my = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [(cx + (x - mx) * sx, cy + (y - my) * sy) for x, y in pts]


def draw_shape(draw: ImageDraw.ImageDraw, shape, cx, cy, r, fill, background):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        h = 2 * r * 0.92
        draw.polygon([(cx, cy - h / 2), (cx + r, cy + h / 2), (cx - r, cy + h / 2)], fill=fill)
    elif shape == "star":
        draw.polygon(star_points(cx, cy, r * 1.05), fill=fill)
    elif shape == "heart":
        draw.polygon(heart_points(cx, cy, r), fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        ri = r * 0.55
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=background)
    else:
        raise ValueError(shape)


def render(attrs: dict, width: int = 256, height: int = 256, rng: random.Random | None = None,
           supersample: int = 4) -> Image.Image:
    """RGB image of a scene. `rng` jitters the colours slightly (lighting variety)."""
    def jitter(rgb):
        if rng is None:
            return rgb
        d = rng.randint(-10, 10)
        return tuple(max(0, min(255, c + d + rng.randint(-6, 6))) for c in rgb)

    bg = jitter(COLOURS[attrs["background"]])
    fg = jitter(COLOURS[attrs["colour"]])
    W, H = width * supersample, height * supersample
    img = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(img)
    side = min(W, H)
    for x, y, r in attrs["objects"]:
        draw_shape(draw, attrs["shape"], x * W, y * H, r * side, fg, bg)
    return img.reduce(supersample) if supersample > 1 else img


def held_out(seed: int = 20260101, prompts: int = 120, seeds_per_prompt: int = 2) -> list:
    """The held-out evaluation set: `prompts` full captions (every nameable attribute named),
    two seeds each. Training never uses a caption that names the same attribute tuple."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < prompts * seeds_per_prompt:
        attrs = sample_scene(rng)
        # Mostly single objects, some with a count; leave the size or position out sometimes.
        caption, key = caption_of(attrs, rng)
        caption = re.sub(r"\ba (?=[aeiou])", "an ", caption)  # held-out prompts: proper English
        if key in seen:
            continue
        seen.add(key)
        for k in range(seeds_per_prompt):
            out.append({
                "prompt": caption,
                "seed": 1000 + len(out),
                "expect": {
                    "colour": attrs["colour"],
                    "shape": attrs["shape"],
                    "background": attrs["background"],
                    "count": attrs["count"],
                    **({"size": attrs["size"]} if key[1] else {}),
                    **({"position": attrs["position"]} if key[4] else {}),
                },
            })
    return out


def held_out_keys(items: list) -> set:
    """Attribute tuples of the held-out prompts (what training must not caption)."""
    keys = set()
    for it in items:
        e = it["expect"]
        keys.add((e["count"], e.get("size"), e["colour"], e["shape"], e.get("position"),
                  e["background"]))
    return keys


def expectation(attrs: dict) -> dict:
    """What the scene checker (scripts/scene_check.ts) should read in a render of `attrs`."""
    return {
        "colour": attrs["colour"],
        "shape": attrs["shape"],
        "background": attrs["background"],
        "count": attrs["count"],
        **({"size": attrs["size"]} if attrs["size"] in ("small", "large") else {}),
        **({"position": attrs["position"]} if attrs["position"] else {}),
    }


def write_renders(folder: str, n: int, seed: int = 777) -> None:
    """`n` random scenes as 256x256 PNGs plus truth.json ([{file, expect}]), for measuring what
    the checker and the autoencoder make of perfect pictures (`deno task score --autoencoder`)."""
    import os
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    truth = []
    for i in range(n):
        attrs = sample_scene(rng)
        render(attrs, rng=rng).save(os.path.join(folder, f"{i}.png"))
        truth.append({"file": f"{i}.png", "expect": expectation(attrs)})
    json.dump(truth, open(os.path.join(folder, "truth.json"), "w"), indent=1)


if __name__ == "__main__":
    import sys
    if sys.argv[1] == "--renders":
        write_renders(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    items = held_out()
    json.dump({"description": "Held-out prompt x seed pairs; training never captions these "
               "attribute tuples (training/scenes.py held_out).", "items": items},
              open(sys.argv[1], "w"), indent=1)
    print(len(items), "items")
