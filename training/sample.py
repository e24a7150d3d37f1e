"""Samples a training checkpoint in PyTorch (Euler ancestral, v-prediction, classifier-free
guidance, 20 steps by default: what the served pipeline does; `--sampler euler` for plain Euler,
the served default until 2026-12-06), for watching a run and for finding where a
model loses what the prompt asked for. Uses the checkpoint's EMA weights, and the autoencoder
(`ae.pt`) of the checkpoint's folder unless --work names another.

    # a grid: rows are six fixed prompts, columns seeds
    /usr/bin/python3 training/sample.py grid training/runs/shapes-tiny/diffusion.pt out.png
    # the first N held-out prompt x seed pairs as PNGs + truth.json (judge: deno task judge DIR)
    /usr/bin/python3 training/sample.py heldout training/runs/shapes-tiny/diffusion.pt DIR --limit 96
    # fresh scenes' layout latents, noised to the K-th of the sampler's noise levels and sampled
    # from there with a caption naming everything (K = --steps: the decoder alone)
    /usr/bin/python3 training/sample.py renoise training/runs/shapes-tiny/diffusion.pt DIR --start 12

`heldout` draws its noise as the server does for the same seed (torch's CPU `randn` from one
generator per image: the initial latents, then each ancestral step's fresh noise), so its pictures
match `deno task score`'s up to float rounding.
"""

import argparse
import json
import os
import random
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layout  # noqa: E402
import model as M  # noqa: E402
import scenes  # noqa: E402
import tokenizer as tok  # noqa: E402

GRID_PROMPTS = [
    "a red circle on a blue background",
    "a large yellow star in the top left on a black background",
    "two green triangles on a white background",
    "a small purple heart in the bottom right on an orange background",
    "a white ring on a red background",
    "a blue square at the bottom on a yellow background",
]
HELDOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heldout.json")


def schedule(steps):
    """The timesteps and noise levels (σ, then a final 0) of the shipped scheduler: SD's
    scaled-linear betas, `linspace` timesteps from 999 (scheduler_config.json)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    sigma_table = ((1 - torch.cumprod(1 - betas, 0)) / torch.cumprod(1 - betas, 0)).sqrt()
    timesteps = torch.linspace(999, 0, steps, dtype=torch.float64)
    sigmas = torch.tensor(np.append(
        np.interp(timesteps.numpy(), np.arange(1000), sigma_table.numpy()), 0.0))
    return timesteps, sigmas


def generators(seeds):
    """One torch generator per image, as the server keeps one per request's seed."""
    return [torch.Generator().manual_seed(s) for s in seeds]


def noise(gens, shape=(layout.CHANNELS, 32, 32)):
    """Standard normal noise [N, *shape] (float64), each image's from its own generator."""
    return torch.cat([torch.randn(1, *shape, generator=g) for g in gens]).double()


def denoise(unet, context, x, gens, timesteps, sigmas, guidance, ancestral=True, start=0):
    """Samples latents `x` (float64, at noise level `start`) with the v-prediction UNet and
    classifier-free guidance (`context` is [unconditional × N, conditional × N]): Euler steps, or
    with `ancestral` diffusers' EulerAncestralDiscreteScheduler: an Euler step to σ_down, then fresh
    noise of size σ_up from each image's generator, so that the variance is σ_to² again."""
    n = len(x)
    for i in range(start, len(timesteps)):
        sigma, to = sigmas[i], sigmas[i + 1]
        scaled = (x / (sigma ** 2 + 1).sqrt()).float()
        v = unet(torch.cat([scaled, scaled]), torch.tensor(float(timesteps[i])), context)
        v = (v[:n] + guidance * (v[n:] - v[:n])).double()
        x0 = x / (sigma ** 2 + 1) - v * sigma / (sigma ** 2 + 1).sqrt()
        up = (to ** 2 * (sigma ** 2 - to ** 2) / sigma ** 2).sqrt() if ancestral else 0
        x = x + (x - x0) / sigma * ((to ** 2 - up ** 2).sqrt() - sigma)
        if ancestral:
            x = x + up * noise(gens, x.shape[1:])
    return x


class Sampler:
    """The checkpoint's text encoder, UNet and autoencoder, and the Euler (ancestral) sampler over
    SD's scaled-linear schedule with `linspace` timesteps (scheduler_config.json)."""

    def __init__(self, ckpt, work, steps, guidance, ancestral=True):
        self.tokenizer = tok.Tokenizer()
        self.ae = M.AutoencoderKL()
        state = torch.load(os.path.join(work, "ae.pt"))
        self.ae.load_state_dict(state["model"])
        self.scaling_factor = state["scaling_factor"]
        self.unet = M.UNet2DConditionModel()
        self.text_encoder = M.TextEncoder(self.tokenizer.vocab_size)
        state = torch.load(ckpt)
        params = list(self.unet.parameters()) + list(self.text_encoder.parameters())
        with torch.no_grad():
            for e, q in zip(state["ema"], params):
                q.copy_(e)
        for m in (self.ae, self.unet, self.text_encoder):
            m.eval()
        self.timesteps, self.sigmas = schedule(steps)
        self.guidance = guidance
        self.ancestral = ancestral

    def encode_text(self, prompts):
        ids = [self.tokenizer.encode(p)[:M.CONTEXT_TOKENS] for p in prompts]
        return self.text_encoder(torch.tensor(ids))

    def sample(self, prompts, x, gens, start=0):
        """Runs the sampler from noise level `start` on latents `x` (float64, already at that
        level), an ancestral step drawing its noise from each image's generator, and returns RGB
        images as uint8 [N, H, W, 3], and the final latents (unscaled)."""
        n = len(prompts)
        context = torch.cat([self.encode_text([""]).expand(n, -1, -1), self.encode_text(prompts)])
        x = denoise(self.unet, context, x, gens, self.timesteps, self.sigmas, self.guidance,
                    self.ancestral, start)
        latents = (x / self.scaling_factor).float()
        images = self.ae.decoder(latents)
        return (((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy(),
                latents)


def write_folder(out, images, expectations):
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    truth = []
    for k, (image, expect) in enumerate(zip(images, expectations)):
        Image.fromarray(image).save(os.path.join(out, f"{k}.png"))
        truth.append({"file": f"{k}.png", "expect": expect})
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    print("wrote", len(truth), "images and truth.json to", out)


def print_latent_score(latents, expectations):
    """How often the latents themselves (layout.read_layout, no decoder) hold the colour,
    background, shape and count asked for: what a perfect decoder could reach."""
    right, named, all_right = {}, {}, 0
    for z, expect in zip(latents, expectations):
        read = layout.read_layout(z)
        ok = True
        for key in ("colour", "background", "shape", "count"):
            if key in expect:
                named[key] = named.get(key, 0) + 1
                hit = read.get(key) == expect[key]
                right[key] = right.get(key, 0) + hit
                ok = ok and hit
        all_right += ok
    print(f"latents alone: {100 * all_right / len(latents):.1f} % right on colour, background, "
          f"shape and count; " + ", ".join(
              f"{k} {right[k]}/{named[k]}" for k in ("colour", "background", "shape", "count")))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["grid", "heldout", "renoise"])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--work", help="folder of ae.pt (default: the checkpoint's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--sampler", choices=["euler_a", "euler"], default="euler_a")
    p.add_argument("--limit", type=int, default=96)
    p.add_argument("--start", type=int, default=0, help="renoise: the noise level to start at")
    p.add_argument("--seed", type=int, default=99, help="renoise: the scenes' and noise's seed")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    work = args.work or os.path.dirname(args.checkpoint)
    for path in (args.checkpoint, os.path.join(work, "ae.pt")):
        if not os.path.isfile(path):
            p.error(f"{path}: no such file")
    if args.mode == "renoise" and not 0 <= args.start <= args.steps:
        p.error(f"--start must be within 0..{args.steps}")
    torch.set_num_threads(args.threads)
    sampler = Sampler(args.checkpoint, work, args.steps, args.guidance,
                      ancestral=args.sampler == "euler_a")
    with torch.no_grad():
        if args.mode == "grid":
            seeds = [100, 101, 102, 103]
            rows = []
            for prompt in GRID_PROMPTS:
                gens = generators(seeds)
                x = noise(gens) * sampler.sigmas[0]
                rows.append(np.concatenate(list(sampler.sample([prompt] * 4, x, gens)[0]),
                                           axis=1))
            from PIL import Image
            Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
            print("wrote", args.out)
        elif args.mode == "heldout":
            with open(HELDOUT) as f:
                items = json.load(f)["items"][:args.limit]
            images, latents = [], []
            for b in range(0, len(items), args.batch):
                chunk = items[b:b + args.batch]
                gens = generators([it["seed"] for it in chunk])
                x = noise(gens) * sampler.sigmas[0]
                done = sampler.sample([it["prompt"] for it in chunk], x, gens)
                images.extend(done[0])
                latents.extend(done[1])
            write_folder(args.out, images, [it["expect"] for it in items])
            print_latent_score(latents, [it["expect"] for it in items])
        else:
            rng = random.Random(args.seed)
            attrs = [scenes.sample_scene(rng) for _ in range(args.limit)]
            images, latents = [], []
            for b in range(0, len(attrs), args.batch):
                x0 = torch.stack([layout.layout_latent(a)
                                  for a in attrs[b:b + args.batch]]) * sampler.scaling_factor
                seeds = range(args.seed * 1000 + b, args.seed * 1000 + b + len(x0))
                gens = generators(seeds)
                x = x0.double() + sampler.sigmas[args.start] * noise(gens)
                prompts = [scenes.caption_of(a)[0] for a in attrs[b:b + args.batch]]
                done = sampler.sample(prompts, x, gens, start=args.start)
                images.extend(done[0])
                latents.extend(done[1])
            write_folder(args.out, images, [scenes.expectation(a) for a in attrs])
            print_latent_score(latents, [scenes.expectation(a) for a in attrs])


if __name__ == "__main__":
    main()
