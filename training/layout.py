"""The layout latent space of shapes-tiny: what the autoencoder's encoder is trained to produce and
its decoder to render, and so what the diffusion model generates.

A scene's latents (`CHANNELS` = 8 channels at 1/8 of the image size) say, at every cell:
- channels 0-1: a 2-D code of the background colour (the same everywhere);
- channels 2-3: a 2-D code of the objects' colour, times the cell's weight w;
- channels 4-5: a 2-D code of the shape, times w;
- channels 6-7: the cell's place in its object, (x - cx, y - cy) / r, times w;
where w is 1 within 1.5 radii of an object's centre and falls to 0 at 2 radii (the nearest object
by d/r). Every attribute is a value over a region (which the diffusion model gets right), and the
object's own coordinates are linear there, so that bilinear upsampling gives every pixel its exact
place in its object: the decoder draws the outline from (coordinates, shape code) pixel by pixel
rather than working out where the object's centre lies from a disc, which no decoder learnt in
the CPU budget (models/shapes-tiny/README.md, History).

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


CHANNELS = 8
# Objects' fields (colour, shape, coordinates) are exact within LINEAR radii of the centre, which
# holds every shape (a triangle's corners lie at 1.36 radii), and fade out by FADE_END.
LINEAR, FADE_END = 1.5, 2.0


def coverage(attrs: dict, h: int = 32, w: int = 32, supersample: int = 4) -> np.ndarray:
    """[h, w]: the fraction of each latent cell (8x8 pixels) inside an object's bounding disc."""
    H, W = 8 * h, 8 * w
    side = min(H, W)
    ys = (np.arange(h * supersample) + 0.5) * (8 / supersample)
    xs = (np.arange(w * supersample) + 0.5) * (8 / supersample)
    inside = np.zeros((h * supersample, w * supersample), dtype=bool)
    for x, y, r in attrs["objects"]:
        inside |= (xs[None, :] - x * W) ** 2 + (ys[:, None] - y * H) ** 2 <= (r * side) ** 2
    return inside.reshape(h, supersample, w, supersample).mean(axis=(1, 3)).astype(np.float32)


def object_fields(attrs: dict, h: int = 32, w: int = 32, supersample: int = 4) -> np.ndarray:
    """[3, h, w]: each cell's mean of w, w * u and w * v, where (u, v) = (x - cx, y - cy) / r is
    the place relative to the nearest object (by d/r) and w its weight (1 up to LINEAR radii, 0
    from FADE_END). Within LINEAR radii the means are the values at the cell's centre, as u and v
    are linear there."""
    H, W = 8 * h, 8 * w
    side = min(H, W)
    ys = (np.arange(h * supersample) + 0.5) * (8 / supersample)
    xs = (np.arange(w * supersample) + 0.5) * (8 / supersample)
    shape = (h * supersample, w * supersample)
    nearest, u, v = np.full(shape, np.inf), np.zeros(shape), np.zeros(shape)
    for x, y, r in attrs["objects"]:
        du = np.broadcast_to((xs[None, :] - x * W) / (r * side), shape)
        dv = np.broadcast_to((ys[:, None] - y * H) / (r * side), shape)
        rho = np.hypot(du, dv)
        closer = rho < nearest
        nearest, u, v = np.where(closer, rho, nearest), np.where(closer, du, u), \
            np.where(closer, dv, v)
    weight = np.clip((FADE_END - nearest) / (FADE_END - LINEAR), 0.0, 1.0)
    fields = np.stack([weight, weight * u, weight * v])
    return fields.reshape(3, h, supersample, w, supersample).mean(axis=(2, 4)).astype(np.float32)


def layout_latent(attrs: dict, h: int = 32, w: int = 32,
                  code_shift: tuple | None = None) -> torch.Tensor:
    """[CHANNELS, h, w]: the scene's layout latents (before the autoencoder's scaling factor).
    `code_shift` (background, object, shape: three 2-vectors) moves the codes off their points,
    as a diffusion model's codes are (the decoder trains on it so that it draws the nearest
    code's colour and shape, not a mix)."""
    weight, wu, wv = object_fields(attrs, h, w)
    codes = [COLOUR_CODES[attrs["background"]], COLOUR_CODES[attrs["colour"]],
             SHAPE_CODES[attrs["shape"]]]
    if code_shift is not None:
        codes = [(c[0] + d[0], c[1] + d[1]) for c, d in zip(codes, code_shift)]
    bg, fg, shape = (np.array(c, np.float32)[:, None, None] for c in codes)
    return torch.from_numpy(np.concatenate([
        np.broadcast_to(bg, (2, h, w)), fg * weight, shape * weight, np.stack([wu, wv])]))


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
    """What one scene's [CHANNELS, h, w] latents (before the scaling factor) say, read back the
    way they were written: the background code nearest to the mean of channels 0-1, the colour
    and shape codes nearest to the means over the cells near objects' centres, and the count of
    separate object cores (d/r < 0.6). Scores a diffusion model's latents without the decoder
    (sample.py prints it), so that a loss can be put on one side or the other."""
    z = z.double().numpy()
    weight = np.hypot(z[4], z[5]) / SHAPE_RADIUS
    inner = weight > 0.8
    # Where two objects' fields meet, the coordinates jump from one to the other and a cell's
    # mean can be small too; an object's own cells have u growing rightwards, v downwards.
    pad = np.pad(z[6:8], ((0, 0), (1, 1), (1, 1)), mode="edge")
    rising = (pad[0, 1:-1, 2:] > pad[0, 1:-1, :-2]) & (pad[1, 2:, 1:-1] > pad[1, :-2, 1:-1])
    core = inner & rising & (np.hypot(z[6], z[7]) < 0.6)
    seen = np.zeros_like(core)
    count = 0
    for y0, x0 in zip(*np.nonzero(core)):
        if seen[y0, x0]:
            continue
        stack, size = [(y0, x0)], 0
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            size += 1
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                v, u = y + dy, x + dx
                if 0 <= v < z.shape[1] and 0 <= u < z.shape[2] and core[v, u] \
                        and not seen[v, u]:
                    seen[v, u] = True
                    stack.append((v, u))
        count += size >= 2
    read = {"count": count, "background": _nearest(COLOUR_CODES, z[:2].mean(axis=(1, 2)))}
    if inner.any():
        read["colour"] = _nearest(COLOUR_CODES, z[2:4, inner].mean(axis=1))
        shape = z[4:6, inner].sum(axis=1)
        read["shape"] = _nearest(SHAPE_CODES, SHAPE_RADIUS * shape / np.hypot(*shape))
    return read
