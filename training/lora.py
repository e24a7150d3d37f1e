"""Trains a LoRA adapter for shapes-tiny's UNet (a palette swap) and writes it in three formats.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 training/lora.py \\
        --base training/runs/base --work training/runs/lora-palette-swap \\
        --out models/loras/shapes-palette-swap --fixtures fixtures/loras/shapes-palette-swap

What it learns: with the adapter, the colour word X in a caption draws the shape in colour P(X),
where P is the 8-cycle `PERMUTATION` below (red -> blue -> yellow -> purple -> green -> orange ->
black -> white -> red; every colour goes to a clearly different one). Backgrounds stay as captioned.
Training data: scenes from training/scenes.py, their layout latents (training/layout.py) made
with the permuted fill colour, captioned with the original words (a scene whose background would
equal the permuted fill gets another background, so the shape never vanishes; held-out caption
tuples are never used, as in train.py).

Base weights: `<base>/diffusion.pt` (EMA weights) and `<base>/ae.pt` from the run
that produced models/shapes-tiny (copy them from that run's `training/runs/`). Before training, the
UNet weights are compared with the committed ONNX UNet's initializers (Conv/Gemm by name, MatMul
weights through their node names, transposed); the run stops if they differ.

Training: UNet only (text encoder and base weights frozen), LoRA rank 4, alpha 8 (PEFT scaling
alpha/r = 2), standard init (A Kaiming-uniform as PEFT, B zero), no dropout, no bias. Objective as
train.py: SD's scaled-linear DDPM schedule (1000 steps), v-prediction MSE, 15 % empty captions,
offset noise 0.1; AdamW (no weight decay), warm-up then cosine to lr/10, grad-norm clip 1. (The
layout prior's own loss is not used: the adapter is judged by the images it makes.)

Targets (every layout the server's LoRA merge has to handle): in each of the 7 cross-attention
transformer blocks attn2.to_q/to_k/to_v/to_out.0 and the block's proj_in/proj_out (Linear exported
as ONNX MatMul, weight stored [in, out]); the layout prior's text_proj (the caption's way into
the prior) and two time_emb_proj (Linear exported as Gemm, transB=1, weight [out, in]); two 3x3
Convs (resnets conv2) and two 1x1 Convs (conv_shortcut) in up blocks.

Outputs:
- <out>/adapter_config.json, <out>/adapter_model.safetensors: PEFT layout, keys
  `base_model.model.<module>.lora_{A,B}.weight` (A [r, in] / [r, in, kh, kw]; B [out, r] /
  [out, r, 1, 1]), float32.
- <fixtures>/diffusers.safetensors: `unet.<module>.lora_{A,B}.weight`, alpha/r folded into B.
- <fixtures>/kohya.safetensors: `lora_unet_<module, '.' -> '_'>.{lora_down.weight, lora_up.weight,
  alpha}` (alpha: float32 scalar, shape []).
- <fixtures>/reference.json: UNet output for a fixed small input without and with the merged
  adapter (W' = W + scale * alpha/r * B @ A) at scale 1 and 0.5.
- <work>/lora.pt (the trained adapter), <work>/log.txt, <work>/loss.csv, <work>/eval.json (the
  measured effect: dominant shape colour of sampled held-out captions, with and without adapter),
  <work>/eval_grid.png.

Deterministic given --seed on the same machine and thread count (--threads, default 1): scenes,
captions, noise and LoRA initialisation come from seeded generators. `--skip-train` reuses
<work>/lora.pt and redoes the exports and the evaluation.
"""

import argparse
import copy
import csv
import json
import math
import os
import random
import struct
import sys
import time

# Debian's torch uses OpenBLAS's pthread build, whose worker pool ignores torch.set_num_threads and
# spins on a second core; one BLAS thread keeps the trainer on one core (shared 2-core machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layout  # noqa: E402
import model as M  # noqa: E402
import sample as sampling  # noqa: E402
import scenes  # noqa: E402
import tokenizer as tok  # noqa: E402

# The palette swap: caption colour -> drawn colour (one 8-cycle over the grammar's colours).
PERMUTATION = {
    "red": "blue",
    "blue": "yellow",
    "yellow": "purple",
    "purple": "green",
    "green": "orange",
    "orange": "black",
    "black": "white",
    "white": "red",
}
assert sorted(PERMUTATION) == sorted(scenes.COLOURS) == sorted(PERMUTATION.values())

RANK, ALPHA = 4, 8
ATTN_BLOCKS = [
    "down_blocks.1.attentions.0",
    "down_blocks.2.attentions.0",
    "mid_block.attentions.0",
    "up_blocks.0.attentions.0",
    "up_blocks.0.attentions.1",
    "up_blocks.1.attentions.0",
    "up_blocks.1.attentions.1",
]
TARGETS = []
for _blk in ATTN_BLOCKS:
    TARGETS += [f"{_blk}.proj_in"]
    TARGETS += [f"{_blk}.transformer_blocks.0.attn2.{m}" for m in ("to_q", "to_k", "to_v", "to_out.0")]
    TARGETS += [f"{_blk}.proj_out"]
TARGETS += [
    "layout.text_proj",                      # Gemm: the caption's way into the layout prior
    "up_blocks.1.resnets.1.time_emb_proj",   # Gemm
    "up_blocks.2.resnets.1.time_emb_proj",   # Gemm
    "up_blocks.1.resnets.1.conv2",           # Conv 3x3
    "up_blocks.2.resnets.1.conv2",           # Conv 3x3
    "up_blocks.1.resnets.1.conv_shortcut",   # Conv 1x1
    "up_blocks.2.resnets.1.conv_shortcut",   # Conv 1x1
]

T = 1000
BETAS = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0).float()


# ---------------------------------------------------------------------------------------------
# LoRA modules


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        self.multiplier = 1.0
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's init for A

    def delta(self):
        return self.lora_B @ self.lora_A

    def forward(self, x):
        return self.base(x) + (self.multiplier * self.scaling) * \
            F.linear(F.linear(x, self.lora_A), self.lora_B)


class LoRAConv2d(nn.Module):
    def __init__(self, base: nn.Conv2d, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        self.multiplier = 1.0
        kh, kw = base.kernel_size
        self.lora_A = nn.Parameter(torch.empty(r, base.in_channels, kh, kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_channels, r, 1, 1))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self):
        r = self.lora_A.shape[0]
        return (self.lora_B.reshape(-1, r) @ self.lora_A.reshape(r, -1)).reshape(
            self.base.weight.shape)

    def forward(self, x):
        b = self.base
        h = F.conv2d(x, self.lora_A, None, b.stride, b.padding, b.dilation)
        return b(x) + (self.multiplier * self.scaling) * F.conv2d(h, self.lora_B)


def get_module(root, name):
    m = root
    for part in name.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def set_module(root, name, new):
    parent_name, _, last = name.rpartition(".")
    parent = get_module(root, parent_name) if parent_name else root
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def add_lora(unet, targets, r=RANK, alpha=ALPHA):
    """Wraps every target module in place; returns {name: wrapper}."""
    out = {}
    for name in targets:
        base = get_module(unet, name)
        if isinstance(base, nn.Linear):
            w = LoRALinear(base, r, alpha)
        elif isinstance(base, nn.Conv2d):
            w = LoRAConv2d(base, r, alpha)
        else:
            raise TypeError(f"{name}: {type(base).__name__}")
        set_module(unet, name, w)
        out[name] = w
    return out


def merged_unet(unet, lora_state, scale, r=RANK, alpha=ALPHA):
    """A copy of the plain `unet` with W' = W + scale * alpha/r * B @ A on every target."""
    u = copy.deepcopy(unet)
    with torch.no_grad():
        for name, (a, b) in lora_state.items():
            mod = get_module(u, name)
            d = (b.reshape(b.shape[0], r) @ a.reshape(r, -1)).reshape(mod.weight.shape)
            mod.weight.add_(d, alpha=scale * alpha / r)
    return u


# ---------------------------------------------------------------------------------------------
# Base model, and its check against the committed ONNX UNet


def load_base(base_dir, ckpt):
    t = tok.Tokenizer()
    ae = M.AutoencoderKL()
    st = torch.load(os.path.join(base_dir, "ae.pt"))
    ae.load_state_dict(st["model"])
    scaling_factor = st["scaling_factor"]
    unet, te = M.UNet2DConditionModel(), M.TextEncoder(t.vocab_size)
    state = torch.load(os.path.join(base_dir, ckpt))
    unet.load_state_dict(state["unet"])
    te.load_state_dict(state["text_encoder"])
    params = list(unet.parameters()) + list(te.parameters())  # train.py's EMA order
    with torch.no_grad():
        for e, q in zip(state["ema"], params):
            q.copy_(e)
    for m in (ae, unet, te):
        m.eval()
        for q in m.parameters():
            q.requires_grad_(False)
    return t, ae, scaling_factor, unet, te


def onnx_node_path(name):
    """`a.b.0.c` -> `/a/b.0/c` (torch.onnx's node-name scopes)."""
    parts = []
    for seg in name.split("."):
        if seg.isdigit():
            parts[-1] += "." + seg
        else:
            parts.append(seg)
    return "/" + "/".join(parts)


def onnx_layouts(unet, onnx_path):
    """Compares every Linear/Conv weight (and named bias/norm tensor) of `unet` with the ONNX
    initializers; returns ({module: op description}, max abs difference)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    ops, maxd = {}, 0.0
    for name, mod in unet.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Conv2d)):
            continue
        path = onnx_node_path(name)
        if isinstance(mod, nn.Conv2d):
            arr = inits[name + ".weight"]
            ops[name] = "Conv %dx%d" % mod.kernel_size
        elif path + "/Gemm" in nodes:
            n = nodes[path + "/Gemm"]
            trans_b = [a.i for a in n.attribute if a.name == "transB"]
            arr = inits[n.input[1]]
            arr = arr if trans_b and trans_b[0] == 1 else arr.T
            ops[name] = "Gemm"
        else:
            arr = inits[nodes[path + "/MatMul"].input[1]].T
            ops[name] = "MatMul"
        maxd = max(maxd, float(np.abs(arr - mod.weight.numpy()).max()))
    for k, v in unet.state_dict().items():
        if k in inits:
            maxd = max(maxd, float(np.abs(inits[k] - v.numpy()).max()))
    return ops, maxd


# ---------------------------------------------------------------------------------------------
# Data


def permuted_scene(rng):
    """(attrs as captioned, attrs as drawn): the drawn scene has the permuted fill colour."""
    attrs = scenes.sample_scene(rng)
    drawn_colour = PERMUTATION[attrs["colour"]]
    if attrs["background"] == drawn_colour:
        attrs["background"] = rng.choice(
            [c for c in scenes.COLOURS if c not in (attrs["colour"], drawn_colour)])
    drawn = dict(attrs, colour=drawn_colour)
    return attrs, drawn


def caption_for(attrs, rng, held_keys, cond_drop):
    if rng.random() < cond_drop:
        return ""
    for _ in range(20):
        caption, key = scenes.caption_of(attrs, rng)
        if key not in held_keys:
            return caption
    return ""


# ---------------------------------------------------------------------------------------------
# Sampling and the colour check


def sample(unet, te, t, ae, sf, prompts, seeds, steps=20, guidance=5.0, size=32):
    """The shipped sampler (sample.py's: Euler ancestral, v-prediction, linspace), classifier-free
    guidance, batched over prompts; returns uint8 images [N, 256, 256, 3]. Noise from one
    torch.Generator(seed) per image, as the server draws it."""
    timesteps, sigmas = sampling.schedule(steps)
    n = len(prompts)
    with torch.no_grad():
        uncond = te(torch.tensor([t.encode("")])).expand(n, -1, -1)
        cond = te(torch.tensor([t.encode(p) for p in prompts]))
        gens = sampling.generators(seeds)
        x = sampling.noise(gens, (layout.CHANNELS, size, size)) * sigmas[0]
        x = sampling.denoise(unet, torch.cat([uncond, cond]), x, gens, timesteps, sigmas, guidance)
        imgs = torch.cat([ae.decoder((x[k:k + 8] / sf).float()) for k in range(0, n, 8)])
    return ((imgs.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


PALETTE_NAMES = list(scenes.COLOURS)
PALETTE = np.array([scenes.COLOURS[c] for c in PALETTE_NAMES], dtype=np.float32)


def nearest(pixels):
    d = ((pixels[:, None, :].astype(np.float32) - PALETTE[None]) ** 2).sum(-1)
    return d.argmin(1)


def read_colours(img):
    """(background, dominant object colour or None), as scripts/scene_check.ts reads them: the
    background is the majority palette colour of the border; object pixels are those more than 45
    from the border's mean background RGB; the object colour is their majority palette colour
    (background-coloured pixels not counted). None when under 0.15 % of the image is object."""
    h, w, _ = img.shape
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    bl = nearest(border)
    bg = np.bincount(bl, minlength=len(PALETTE)).argmax()
    mean = border[bl == bg].astype(np.float32).mean(0)
    flat = img.reshape(-1, 3).astype(np.float32)
    fg = flat[np.sqrt(((flat - mean) ** 2).sum(-1)) > 45]
    if len(fg) < 0.0015 * h * w:
        return PALETTE_NAMES[bg], None
    lab = nearest(fg)
    lab = lab[lab != bg]
    if len(lab) == 0:
        return PALETTE_NAMES[bg], None
    return PALETTE_NAMES[bg], PALETTE_NAMES[np.bincount(lab, minlength=len(PALETTE)).argmax()]


def eval_items(n):
    """The first `n` held-out prompts (one seed each) whose permuted colour differs from their
    background (otherwise the swapped shape would be invisible)."""
    items, seen = [], set()
    for it in scenes.held_out():
        e = it["expect"]
        if it["prompt"] in seen or PERMUTATION[e["colour"]] == e["background"]:
            continue
        seen.add(it["prompt"])
        items.append(it)
        if len(items) == n:
            break
    return items


def score(images, items):
    rows, n_capt, n_perm, n_bg = [], 0, 0, 0
    for img, it in zip(images, items):
        e = it["expect"]
        bg, col = read_colours(img)
        rows.append({"prompt": it["prompt"], "seed": it["seed"], "read_colour": col,
                     "read_background": bg})
        n_capt += col == e["colour"]
        n_perm += col == PERMUTATION[e["colour"]]
        n_bg += bg == e["background"]
    return {"n": len(items), "captioned_colour": n_capt, "permuted_colour": n_perm,
            "background_as_captioned": n_bg}, rows


# ---------------------------------------------------------------------------------------------
# Writers


def write_safetensors(path, tensors, metadata=None):
    """Hand-written safetensors (float32): 8-byte LE header length, JSON header padded with spaces
    to a multiple of 8, tensor bytes contiguous in header order."""
    header = {"__metadata__": metadata or {"format": "pt"}}
    blobs, offset = [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k].detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy().reshape(v["shape"]))
    return out


def write_json(path, obj, indent=2):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def f32list(x):
    return [float(np.float32(v)) for v in x.detach().reshape(-1).numpy()]


def export(args, lora_state, unet, te, t, ops):
    """The PEFT folder, the diffusers and kohya files, and reference.json."""
    peft, diff, kohya = {}, {}, {}
    for name, (a, b) in lora_state.items():
        peft[f"base_model.model.{name}.lora_A.weight"] = a
        peft[f"base_model.model.{name}.lora_B.weight"] = b
        diff[f"unet.{name}.lora_A.weight"] = a
        diff[f"unet.{name}.lora_B.weight"] = b * (ALPHA / RANK)
        k = "lora_unet_" + name.replace(".", "_")
        kohya[f"{k}.lora_down.weight"] = a
        kohya[f"{k}.lora_up.weight"] = b
        kohya[f"{k}.alpha"] = torch.tensor(float(ALPHA))
    write_safetensors(os.path.join(args.out, "adapter_model.safetensors"), peft)
    write_json(os.path.join(args.out, "adapter_config.json"), {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": ALPHA,
        "target_modules": list(lora_state),
        "base_model_name_or_path": "denoise/shapes-tiny",
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "task_type": None,
        "lora_dropout": 0.0,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    })
    write_safetensors(os.path.join(args.fixtures, "diffusers.safetensors"), diff)
    write_safetensors(os.path.join(args.fixtures, "kohya.safetensors"), kohya)

    # reference.json: a small fixed UNet input; outputs of the base and the merged UNet.
    g = torch.Generator().manual_seed(args.seed + 100)
    sample_ = torch.randn(1, layout.CHANNELS, 8, 8, generator=g)
    timestep = torch.tensor(500.0)
    prompt = "a red circle on a blue background"
    seq = args.ref_tokens
    with torch.no_grad():
        ids = torch.tensor([t.encode(prompt)])
        hidden = te(ids)[:, :seq].contiguous()
        base_out = unet(sample_, timestep, hidden)
        merged1 = merged_unet(unet, lora_state, 1.0)(sample_, timestep, hidden)
        merged05 = merged_unet(unet, lora_state, 0.5)(sample_, timestep, hidden)
    ref = {
        "description": "UNet of models/shapes-tiny (inputs as its ONNX graph: sample float32 "
                       f"[batch, {layout.CHANNELS}, h, w], timestep float32 scalar, "
                       "encoder_hidden_states float32 "
                       "[batch, seq, 128]) on a fixed input, without (base_output) and with the "
                       "palette-swap adapter merged as W' = W + scale * (lora_alpha / r) * B @ A "
                       "(merged_output: scale 1, merged_output_scale_0_5: scale 0.5); PyTorch "
                       "float32, outputs flattened row-major as out_sample "
                       f"[1, {layout.CHANNELS}, 8, 8]. "
                       "encoder_hidden_states is the text encoder's last_hidden_state for "
                       f"'{prompt}' (77 ids), first {seq} positions (the graph's sequence axis "
                       "is dynamic; the text encoder is causal, so these equal the first "
                       f"{seq} rows of the full output). Written by training/lora.py.",
        "prompt": prompt,
        "adapter": "models/loras/shapes-palette-swap",
        "r": RANK,
        "lora_alpha": ALPHA,
        "scale": 1.0,
        "inputs": {
            "sample": {"dims": list(sample_.shape), "data": f32list(sample_)},
            "timestep": {"dims": [], "data": [float(timestep)]},
            "encoder_hidden_states": {"dims": list(hidden.shape), "data": f32list(hidden)},
        },
        "output_dims": list(base_out.shape),
        "base_output": f32list(base_out),
        "merged_output": f32list(merged1),
        "merged_output_scale_0_5": f32list(merged05),
        "max_abs_diff_merged_vs_base": float((merged1 - base_out).abs().max()),
        "max_abs_diff_merged_0_5_vs_base": float((merged05 - base_out).abs().max()),
        "target_ops": {name: ops[name] for name in lora_state},
    }
    write_json(os.path.join(args.fixtures, "reference.json"), ref, indent=None)
    return ref


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="training/runs/base",
                   help="folder with diffusion.pt and ae.pt of the shipped run")
    p.add_argument("--ckpt", default="diffusion.pt")
    p.add_argument("--onnx-unet", default="models/shapes-tiny/unet/model.onnx")
    p.add_argument("--work", default="training/runs/lora-palette-swap")
    p.add_argument("--out", default="models/loras/shapes-palette-swap")
    p.add_argument("--fixtures", default="fixtures/loras/shapes-palette-swap")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=1100)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--cond-drop", type=float, default=0.15)
    p.add_argument("--offset-noise", type=float, default=0.1)
    p.add_argument("--eval-prompts", type=int, default=48)
    p.add_argument("--ref-tokens", type=int, default=16,
                   help="sequence length of reference.json's encoder_hidden_states")
    p.add_argument("--skip-train", action="store_true", help="reuse <work>/lora.pt")
    p.add_argument("--skip-eval", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    log_file = open(os.path.join(args.work, "log.txt"), "a")

    def log(*a):
        line = " ".join(str(x) for x in a)
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    log(f"== lora run {time.strftime('%Y-%m-%d %H:%M:%S')} args {vars(args)} torch "
        f"{torch.__version__} threads {torch.get_num_threads()} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    t, ae, sf, unet, te = load_base(args.base, args.ckpt)
    ops, maxd = onnx_layouts(unet, args.onnx_unet)
    log(f"base {args.base}/{args.ckpt} vs {args.onnx_unet}: max abs weight difference {maxd}")
    if maxd != 0.0:
        sys.exit("the checkpoint does not reproduce the committed ONNX UNet")
    log("targets: " + ", ".join(f"{n} ({ops[n]})" for n in TARGETS))

    lora_path = os.path.join(args.work, "lora.pt")
    held_keys = scenes.held_out_keys(scenes.held_out())
    if args.skip_train:
        lora_state = torch.load(lora_path)["lora"]
        log(f"reusing {lora_path}")
    else:
        torch.manual_seed(args.seed)
        rng = random.Random(args.seed)
        model = copy.deepcopy(unet)
        wrappers = add_lora(model, TARGETS)
        params = [q for w in wrappers.values() for q in (w.lora_A, w.lora_B)]
        log(f"LoRA parameters: {sum(q.numel() for q in params)} in {len(wrappers)} modules")
        model.train()
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
        rows, smooth, t0 = [], None, time.time()
        L = M.CONTEXT_TOKENS
        for step in range(args.steps):
            warm = min(1.0, (step + 1) / args.warmup)
            q = step / args.steps
            for g in opt.param_groups:
                g["lr"] = args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))
            pairs = [permuted_scene(rng) for _ in range(args.batch)]
            captions = [caption_for(a, rng, held_keys, args.cond_drop) for a, _ in pairs]
            x0 = layout.layout_batch([d for _, d in pairs]) * sf
            with torch.no_grad():
                ctx = te(torch.tensor([t.encode(c)[:L] for c in captions]))
            tt = torch.randint(0, T, (args.batch,))
            noise = torch.randn_like(x0) + \
                args.offset_noise * torch.randn(args.batch, layout.CHANNELS, 1, 1)
            ac = ALPHAS_CUMPROD[tt].view(-1, 1, 1, 1)
            xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
            target = ac.sqrt() * noise - (1 - ac).sqrt() * x0
            loss = (model(xt, tt.float(), ctx) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            mse = loss.item()
            smooth = mse if smooth is None else 0.98 * smooth + 0.02 * mse
            rows.append((step, mse))
            if step % 25 == 0 or step == args.steps - 1:
                el = time.time() - t0
                log(f"lora step {step} v-mse {mse:.4f} (smoothed "
                    f"{smooth:.4f}) lr {opt.param_groups[0]['lr']:.2e} {el:.0f}s "
                    f"({el / (step + 1):.2f} s/step)")
        train_s = time.time() - t0
        log(f"lora: trained in {train_s:.0f}s")
        lora_state = {n: (w.lora_A.detach().clone(), w.lora_B.detach().clone())
                      for n, w in wrappers.items()}
        # A check of the merge formula: wrapped model == merged copy.
        with torch.no_grad():
            model.eval()
            xs = torch.randn(2, layout.CHANNELS, 32, 32)
            c = te(torch.tensor([t.encode("a red circle on a blue background")] * 2))
            d = (model(xs, torch.tensor(400.0), c) -
                 merged_unet(unet, lora_state, 1.0)(xs, torch.tensor(400.0), c)).abs().max()
        log(f"wrapped vs merged max abs difference {float(d):.2e}")
        torch.save({"lora": lora_state, "targets": TARGETS, "r": RANK, "alpha": ALPHA,
                    "permutation": PERMUTATION, "train_seconds": train_s, "args": vars(args)},
                   lora_path)
        with open(os.path.join(args.work, "loss.csv"), "w") as f:
            csv.writer(f).writerows([("step", "v_mse"), *rows])

    ref = export(args, lora_state, unet, te, t, ops)
    # Round trip of the three files against the trained tensors.
    peft = read_safetensors(os.path.join(args.out, "adapter_model.safetensors"))
    diff = read_safetensors(os.path.join(args.fixtures, "diffusers.safetensors"))
    kohya = read_safetensors(os.path.join(args.fixtures, "kohya.safetensors"))
    for name, (a, b) in lora_state.items():
        k = "lora_unet_" + name.replace(".", "_")
        dw = (b.reshape(b.shape[0], RANK) @ a.reshape(RANK, -1)) * (ALPHA / RANK)
        for aa, bb, s in [(peft[f"base_model.model.{name}.lora_A.weight"],
                           peft[f"base_model.model.{name}.lora_B.weight"], ALPHA / RANK),
                          (diff[f"unet.{name}.lora_A.weight"], diff[f"unet.{name}.lora_B.weight"],
                           1.0),
                          (kohya[f"{k}.lora_down.weight"], kohya[f"{k}.lora_up.weight"],
                           float(kohya[f"{k}.alpha"]) / RANK)]:
            got = (bb.reshape(bb.shape[0], RANK) @ aa.reshape(RANK, -1)) * s
            assert torch.allclose(got, dw, rtol=1e-6, atol=1e-7), name
    log(f"exported {len(lora_state)} modules; reference: merged vs base max abs diff "
        f"{ref['max_abs_diff_merged_vs_base']:.4f} (scale 0.5: "
        f"{ref['max_abs_diff_merged_0_5_vs_base']:.4f})")

    if args.skip_eval:
        return
    items = eval_items(args.eval_prompts)
    prompts, seeds = [it["prompt"] for it in items], [it["seed"] for it in items]
    t0 = time.time()
    result = {"permutation": PERMUTATION, "steps": 20, "guidance": 5.0, "items": len(items)}
    grids = []
    for label, u in [("without_adapter", unet), ("with_adapter", merged_unet(unet, lora_state, 1.0))]:
        imgs = []
        for k in range(0, len(items), 16):
            imgs.append(sample(u, te, t, ae, sf, prompts[k:k + 16], seeds[k:k + 16]))
        imgs = np.concatenate(imgs)
        summary, rows = score(imgs, items)
        result[label] = summary
        result[label + "_rows"] = rows
        log(f"eval {label}: {summary} ({time.time() - t0:.0f}s)")
        grids.append(np.concatenate([np.concatenate(list(imgs[r * 12:(r + 1) * 12, ::2, ::2]), 1)
                                     for r in range(len(items) // 12)], 0))
    write_json(os.path.join(args.work, "eval.json"), result)
    from PIL import Image
    Image.fromarray(np.concatenate(grids, 0)).save(os.path.join(args.work, "eval_grid.png"))


if __name__ == "__main__":
    main()
