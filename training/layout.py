"""The layout latent space of shapes-tiny: what the autoencoder's encoder is trained to produce and
its decoder to render, and so what the diffusion model generates.

A scene's latents (4 channels at 1/8 of the image size) are its objects' bounding discs, drawn
anti-aliased: channels 0-1 hold a 2-D code of the colour (the background's outside the discs, the
objects' inside), channels 2-3 a 2-D code of the shape inside the discs (0 outside). Every
attribute is then a value over a region, as the colour already was in a learnt latent space, where
the diffusion model got colours right 99 % of the time and shapes 27 %; the decoder, not the
diffusion model, turns a disc with a star's code into a star's outline.

The codes are points on circles (8 colours at radius 1, 6 shapes at radius 2), so that every
pair of codes is at least 0.77 (colours) or 2 (shapes) apart.
"""

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

import scenes

# Neighbours on the circle are the codes most easily confused; they are dissimilar colours.
COLOUR_ORDER = ["red", "blue", "yellow", "purple", "green", "orange", "black", "white"]
COLOUR_RADIUS, SHAPE_RADIUS = 1.0, 2.0
COLOUR_CODES = {
    c: (COLOUR_RADIUS * math.cos(2 * math.pi * k / 8), COLOUR_RADIUS * math.sin(2 * math.pi * k / 8))
    for k, c in enumerate(COLOUR_ORDER)}
SHAPE_CODES = {
    s: (SHAPE_RADIUS * math.cos(2 * math.pi * k / 6), SHAPE_RADIUS * math.sin(2 * math.pi * k / 6))
    for k, s in enumerate(scenes.SHAPES)}


def coverage(attrs: dict, h: int = 32, w: int = 32, supersample: int = 4,
             profile: bool = False) -> np.ndarray:
    """[h, w]: the fraction of each latent cell (8x8 pixels) inside an object's bounding disc, or
    with `profile` the cell's mean of 1 - (d/r)^2 / 2 over it (1 at the centre, 1/2 at the rim)."""
    H, W = 8 * h, 8 * w
    side = min(H, W)
    ys = (np.arange(h * supersample) + 0.5) * (8 / supersample)
    xs = (np.arange(w * supersample) + 0.5) * (8 / supersample)
    value = np.zeros((h * supersample, w * supersample), dtype=np.float64)
    for x, y, r in attrs["objects"]:
        d2 = ((xs[None, :] - x * W) ** 2 + (ys[:, None] - y * H) ** 2) / (r * side) ** 2
        inside = d2 <= 1
        value = np.maximum(value, np.where(inside, 1 - d2 / 2 if profile else 1.0, 0.0))
    return value.reshape(h, supersample, w, supersample).mean(axis=(1, 3)).astype(np.float32)


def layout_latent(attrs: dict, h: int = 32, w: int = 32,
                  code_shift: tuple | None = None) -> torch.Tensor:
    """[4, h, w]: the scene's layout latents (before the autoencoder's scaling factor).
    `code_shift` (background, object, shape: three 2-vectors) moves the codes off their points,
    as a diffusion model's codes are (the decoder trains on it so that it draws the nearest
    code's colour and shape, not a mix)."""
    disc = coverage(attrs, h, w)[None]
    bump = coverage(attrs, h, w, profile=True)[None]
    codes = [COLOUR_CODES[attrs["background"]], COLOUR_CODES[attrs["colour"]],
             SHAPE_CODES[attrs["shape"]]]
    if code_shift is not None:
        codes = [(c[0] + d[0], c[1] + d[1]) for c, d in zip(codes, code_shift)]
    bg, fg, shape = (np.array(c, np.float32)[:, None, None] for c in codes)
    return torch.from_numpy(np.concatenate([bg * (1 - disc) + fg * disc, shape * bump]))


def random_code_shift(rng: random.Random) -> tuple:
    """Random offsets of the background, object and shape codes: about a quarter of the distance
    to the nearest other code (0.77 between colours, 2 between shapes), sometimes up to half."""
    def shift(scale):
        return (rng.gauss(0.0, scale), rng.gauss(0.0, scale))
    return shift(0.12), shift(0.12), shift(0.4)


def layout_batch(attrs_list: list) -> torch.Tensor:
    return torch.stack([layout_latent(a) for a in attrs_list])


def blur(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, h, w] latents (replicated edges), sigma in cells."""
    k = torch.tensor([math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-2, 3)])
    k = (k / k.sum()).to(z.dtype)
    c = z.shape[1]
    z = F.conv2d(F.pad(z, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(z, (0, 0, 2, 2), mode="replicate"),
                    k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def imperfect(z: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """One scene's [C, h, w] latents as a diffusion model might leave them (softer edges, codes a
    little off, some noise): what the decoder trains on, so that it draws clean shapes from
    them."""
    if rng.random() < 0.5:
        z = blur(z[None], rng.uniform(0.3, 1.0))[0]
    return z * rng.uniform(0.85, 1.15) + rng.uniform(0.0, 0.15) * torch.randn_like(z)


def _nearest(codes: dict, v: np.ndarray) -> str:
    return min(codes, key=lambda k: float(np.hypot(*(np.array(codes[k]) - v))))


def read_layout(z: torch.Tensor) -> dict:
    """What one scene's [4, h, w] latents (before the scaling factor) say, read back the way they
    were written: the colour, background and shape codes nearest to the means over the objects and
    outside them, and the count of separate objects. Scores a diffusion model's latents without
    the decoder (sample.py prints it), so that a loss can be put on one side or the other."""
    z = z.double().numpy()
    strength = np.hypot(z[2], z[3]) / SHAPE_RADIUS
    inner, outside = strength > 0.4, strength < 0.1
    objects = strength > 0.25
    seen = np.zeros_like(objects)
    count = 0
    for y0, x0 in zip(*np.nonzero(objects)):
        if seen[y0, x0]:
            continue
        stack, size = [(y0, x0)], 0
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            size += 1
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                v, u = y + dy, x + dx
                if 0 <= v < z.shape[1] and 0 <= u < z.shape[2] and objects[v, u] \
                        and not seen[v, u]:
                    seen[v, u] = True
                    stack.append((v, u))
        count += size >= 2
    read = {"count": count,
            "background": _nearest(COLOUR_CODES, z[:2, outside].mean(axis=1))
            if outside.any() else None}
    if inner.any():
        read["colour"] = _nearest(COLOUR_CODES, z[:2, inner].mean(axis=1))
        shape = z[2:, inner].sum(axis=1)
        read["shape"] = _nearest(SHAPE_CODES, SHAPE_RADIUS * shape / np.hypot(*shape))
    return read

