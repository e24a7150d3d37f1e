"""Trains shapes-tiny from nothing and exports it as a diffusers/Optimum ONNX folder.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 training/train.py --out models/shapes-tiny

Phases (each checkpointed under --work, so an interrupted run resumes with --resume):
1. autoencoder. The latent space is designed, not learnt: a scene's latents are its objects'
   bounding discs carrying a colour code and a shape code (training/layout.py), and
   `scaling_factor` makes them unit-variance.
1a. decoder: renders scenes from their layout latents, made imperfect (blurred, scaled, noisy)
   so that it draws clean shapes from what a diffusion model leaves; 20x20-cell crops around an
   object, L1 + MSE on pixels plus L1 on pixel differences (sharp edges).
1b. decoder fine-tune: the same, with the codes shifted off their points, so that the decoder
   draws the nearest code's colour and shape rather than a mix.
1c. encoder (for image-to-image): regresses the layout latents from 256x256 renders (MSE).
2a. layout prior: the text encoder and the UNet's layout prior (model.py `LayoutPrior`) alone,
   fitting the prior to the clean latents (object pixels weighted up), plus training-only heads
   that read each named attribute back from the caption's mean token state.
2. diffusion: text encoder + UNet jointly, v-prediction MSE on SD's scaled-linear DDPM schedule
   (1000 steps) with offset noise, plus the layout prior's loss and the parsing heads' loss;
   15 % of captions dropped to "" (classifier-free guidance), EMA of the weights. Scenes and
   their layout latents are made on the fly; captions that name a held-out attribute tuple
   (training/scenes.py `held_out`) are never used.
3. export: ONNX graphs + configs + tokenizer files into --out (export.py), loss curves.

Deterministic given --seed (single process, fixed thread count, seeded Python/torch RNGs).
"""

import argparse
import csv
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layout  # noqa: E402
import model as M  # noqa: E402
import scenes  # noqa: E402
import tokenizer as tok  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--out", default="models/shapes-tiny")
p.add_argument("--work", default="training/runs/shapes-tiny")
p.add_argument("--seed", type=int, default=1234)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--decoder-steps", type=int, default=2000)
p.add_argument("--decoder-batch", type=int, default=12)
p.add_argument("--decoder-pixels", type=int, default=4096, help="pixels of each scene per step")
p.add_argument("--snap-steps", type=int, default=600,
               help="decoder fine-tune on shifted codes (phase 1b)")
p.add_argument("--encoder-steps", type=int, default=500)
p.add_argument("--encoder-batch", type=int, default=16)
p.add_argument("--steps", type=int, default=5000)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--ema", type=float, default=0.995)
p.add_argument("--cond-drop", type=float, default=0.15)
p.add_argument("--offset-noise", type=float, default=0.1)
p.add_argument("--prior-weight", type=float, default=1.0,
               help="weight of the layout prior's own loss in the diffusion phase")
p.add_argument("--object-weight", type=float, default=8.0,
               help="extra weight of object pixels in the layout prior's loss")
p.add_argument("--prior-steps", type=int, default=600)
p.add_argument("--multi-object-share", type=float, default=0.5,
               help="share of two- and three-object scenes in the diffusion phases' batches "
               "(the scene world's own mix, which the autoencoder and the held-out set use, is 0.2)")
p.add_argument("--resume", action="store_true")
p.add_argument("--stop-after", choices=["autoencoder", "diffusion"], default=None)
p.add_argument("--start-at", choices=["autoencoder", "diffusion"], default="autoencoder",
               help="diffusion: skip phase 1 (the diffusion phases need no autoencoder), so that "
               "phases 1 and 2 can run side by side in two processes")
p.add_argument("--skip-export", action="store_true")
args = p.parse_args()
if args.start_at == "diffusion" and args.stop_after != "diffusion":
    p.error("--start-at diffusion needs --stop-after diffusion (the export needs phase 1)")

torch.set_num_threads(args.threads)
os.makedirs(args.work, exist_ok=True)
T = 1000
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
alphas_cumprod = torch.cumprod(1 - betas, 0).float()
held = scenes.held_out()
held_keys = scenes.held_out_keys(held)
tokenizer = tok.Tokenizer()
log_file = open(os.path.join(args.work, "log.txt"), "a")


def log(*a):
    line = " ".join(str(x) for x in a)
    print(line, flush=True)
    log_file.write(line + "\n")
    log_file.flush()


def to_tensor(images):
    import numpy as np
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def render_batch(rng, n, size=256):
    attrs = [scenes.sample_scene(rng) for _ in range(n)]
    return attrs, to_tensor([scenes.render(a, size, size, rng=rng) for a in attrs])


def lr_at(step, total, base):
    if step < args.warmup:
        return base * (step + 1) / args.warmup
    q = (step - args.warmup) / max(1, total - args.warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


started = time.time()
log(f"hardware: {os.cpu_count()} logical CPUs, {cpu_name()}")
log(f"== run {time.strftime('%Y-%m-%d %H:%M:%S')} args {vars(args)} torch {torch.__version__}"
    f" threads {torch.get_num_threads()} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")

# ---------------------------------------------------------------------------------------------
# 1. Autoencoder. The latent space is fixed (training/layout.py): the decoder learns to render
# scenes from their layout latents, the encoder to find them in renders. Neither depends on the
# other, and the diffusion phases need neither.
# Debian's torch seeds its generator randomly at start, so every initialisation is seeded.
torch.manual_seed(args.seed + 4)
ae = M.AutoencoderKL()
assert torch.allclose(ae.decoder.shape_directions[:, :, 0, 0] * layout.SHAPE_RADIUS,
                      torch.tensor([layout.SHAPE_CODES[k] for k in scenes.SHAPES]), atol=1e-5), \
    "the decoder's shape directions must be layout.SHAPE_CODES'"
with torch.no_grad():
    rng = random.Random(args.seed + 3)
    scaling_factor = float(1.0 / layout.layout_batch(
        [scenes.sample_scene(rng) for _ in range(512)]).std())
log(f"layout latents: scaling_factor {scaling_factor:.5f}")


def decoder_pixels(attrs, rng, n):
    """[n, 2] integer (x, y) pixels of a 256x256 scene to train the decoder on: half anywhere,
    half within 1.5 radii of an object (where the outlines are)."""
    g = torch.Generator().manual_seed(rng.getrandbits(31))
    anywhere = torch.randint(0, 256, (n - n // 2, 2), generator=g)
    objects = torch.tensor(attrs["objects"])[torch.randint(0, len(attrs["objects"]), (n // 2,),
                                                            generator=g)]
    offset = (torch.rand(n // 2, 2, generator=g) * 3 - 1.5) * objects[:, 2:3]
    near = ((objects[:, :2] + offset) * 256).long().clamp(0, 255)
    return torch.cat([anywhere, near])


def train_decoder(name, steps, lr, seed, csv_name, shift_codes):
    """Trains ae.decoder on chosen pixels of whole scenes (`decoder_pixels`), from layout latents
    made imperfect: L1 + MSE on the pixels' colours, plus the cross-entropy of the decoder's
    share to the objects' true coverage (which the colour loss alone taught slowly)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.Adam(ae.decoder.parameters(), lr=lr)
    rows = []
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        zs, grids, targets, masks = [], [], [], []
        for _ in range(args.decoder_batch):
            attrs = scenes.sample_scene(rng)
            img = to_tensor([scenes.render(attrs, rng=rng)])[0]
            mask = to_tensor([scenes.render({**attrs, "colour": "white", "background": "black"})])
            shift = layout.random_code_shift(rng) if shift_codes else None
            zs.append(layout.imperfect(layout.layout_latent(attrs, code_shift=shift), rng))
            xy = decoder_pixels(attrs, rng, args.decoder_pixels)
            grids.append((xy.float() + 0.5) / 128 - 1)
            targets.append(img[:, xy[:, 1], xy[:, 0]])
            masks.append((mask[0, :1, xy[:, 1], xy[:, 0]] + 1) / 2)
        p = ae.decoder.sample_at(torch.stack(zs), torch.stack(grids)[:, :, None])
        rec, share = ae.decoder.pixels(p)[:, :, :, 0], ae.decoder.share_of(p)[:, :, :, 0]
        x = torch.stack(targets)
        loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + \
            F.binary_cross_entropy(share.clamp(1e-6, 1 - 1e-6), torch.stack(masks))
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append((step, loss.item()))
        if step % 50 == 0 or step == steps - 1:
            log(f"{name} step {step} loss {loss.item():.5f} {time.time() - t0:.0f}s")
    with open(os.path.join(args.work, csv_name), "w") as f:
        csv.writer(f).writerows([("step", "loss"), *rows])
    log(f"{name}: done in {time.time() - t0:.0f}s")


# Phase 1 is skipped by --start-at diffusion (another process runs it; --resume then loads
# it for the export).
if args.start_at == "autoencoder":
    # 1a. Decoder.
    dec_path = os.path.join(args.work, "decoder.pt")
    if args.resume and os.path.exists(dec_path):
        ae.decoder.load_state_dict(torch.load(dec_path))
        log("decoder: resumed")
    else:
        train_decoder("decoder", args.decoder_steps, 2e-3, args.seed, "decoder_loss.csv", False)
        torch.save(ae.decoder.state_dict(), dec_path)

    # 1b. Decoder fine-tune: the same data with the codes shifted off their points (layout.py
    # `random_code_shift`), from phase 1a's weights at a lower learning rate, so that the decoder
    # draws the nearest code's colour and shape, not a mix (a colour code between black and orange
    # drew a black shape with an orange rim).
    snap_path = os.path.join(args.work, "decoder_snap.pt")
    if args.resume and os.path.exists(snap_path):
        ae.decoder.load_state_dict(torch.load(snap_path))
        log("decoder fine-tune: resumed")
    elif args.snap_steps > 0:
        train_decoder("decoder fine-tune", args.snap_steps, 5e-4, args.seed + 6,
                      "decoder_snap_loss.csv", True)
        torch.save(ae.decoder.state_dict(), snap_path)

    # 1c. Encoder (for image-to-image; the diffusion phases use the exact layout latents): MSE to the
    # layout latents of whole 256x256 renders.
    enc_path = os.path.join(args.work, "encoder.pt")
    if args.resume and os.path.exists(enc_path):
        ae.encoder.load_state_dict(torch.load(enc_path))
        log("encoder: resumed")
    else:
        torch.manual_seed(args.seed + 2)
        rng = random.Random(args.seed + 2)
        opt = torch.optim.Adam(ae.encoder.parameters(), lr=2e-3)
        rows = []
        t0 = time.time()
        for step in range(args.encoder_steps):
            for g in opt.param_groups:
                g["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.encoder_steps)))
            attrs, imgs = render_batch(rng, args.encoder_batch)
            loss = F.mse_loss(ae.encoder(imgs), layout.layout_batch(attrs))
            opt.zero_grad()
            loss.backward()
            opt.step()
            rows.append((step, loss.item()))
            if step % 50 == 0 or step == args.encoder_steps - 1:
                log(f"encoder step {step} mse {loss.item():.5f} {time.time() - t0:.0f}s")
        with open(os.path.join(args.work, "encoder_loss.csv"), "w") as f:
            csv.writer(f).writerows([("step", "loss"), *rows])
        torch.save(ae.encoder.state_dict(), enc_path)
        log(f"encoder: done in {time.time() - t0:.0f}s")
    # The finished autoencoder, as sample.py and lora.py load it.
    torch.save({"model": ae.state_dict(), "scaling_factor": scaling_factor},
               os.path.join(args.work, "ae.pt"))
    ae.eval()
    for q in ae.parameters():
        q.requires_grad_(False)
if args.stop_after == "autoencoder":
    sys.exit(0)

# ---------------------------------------------------------------------------------------------
# 2. Diffusion
torch.manual_seed(args.seed + 1)
unet = M.UNet2DConditionModel()
text_encoder = M.TextEncoder(tokenizer.vocab_size)
params = list(unet.parameters()) + list(text_encoder.parameters())
diff_path = os.path.join(args.work, "diffusion.pt")
L = M.CONTEXT_TOKENS


def caption_for(attrs, rng):
    """(caption, the attribute tuple it names); ("", None) for a dropped caption."""
    if rng.random() < args.cond_drop:
        return "", None
    for _ in range(20):
        caption, key = scenes.caption_of(attrs, rng)
        if key not in held_keys:
            return caption, key
    return "", None


# Training-only heads that read each named attribute back from the mean of the caption's token
# states (the layout prior's text input). Their cross-entropy teaches the text encoder to parse
# the grammar within ~200 steps, long before the diffusion loss alone would; they are not
# exported. One class per value plus "not named".
HEADS = [(1, ["small", "medium", "large"]), (2, list(scenes.COLOURS)), (3, scenes.SHAPES),
         (4, list(scenes.POSITIONS)), (5, list(scenes.COLOURS)), (0, [1, 2, 3])]
text_width = text_encoder.final_layer_norm.normalized_shape[0]
heads = torch.nn.ModuleList([torch.nn.Linear(text_width, len(v) + 1) for _, v in HEADS])


def parse_loss(context, keys):
    pooled = context[:, :L].mean(dim=1)
    loss = 0.0
    for head, (i, values) in zip(heads, HEADS):
        y = torch.tensor([len(values) if k is None or k[i] is None else values.index(k[i])
                          for k in keys])
        loss = loss + F.cross_entropy(head(pooled), y)
    return loss


def prior_loss(prior, x0, on_object):
    """MSE of the layout prior to the clean latents, 1 + args.object_weight on latent cells
    covered by objects (objects fill ~10 % of a scene; unweighted, the prior learns the
    background first and objects only after ~700 steps)."""
    return ((prior - x0).pow(2) * (1 + args.object_weight * on_object)).mean()


def batch_for(rng):
    """(clean latents, the share of each cell on an object, caption ids, named attributes)."""
    attrs = [scenes.sample_scene(rng, args.multi_object_share) for _ in range(args.batch)]
    z = layout.layout_batch(attrs)
    on_object = torch.stack([torch.from_numpy(layout.coverage(a))[None] for a in attrs])
    captions = [caption_for(a, rng) for a in attrs]
    ids = torch.tensor([tokenizer.encode(c)[:L] for c, _ in captions])
    return z * scaling_factor, on_object, ids, [k for _, k in captions]


# 2a. Layout prior: text encoder + the UNet's layout prior (+ the parsing heads) alone, which is
# cheap (no UNet pass), so that the diffusion phase starts with a prior that already places the
# named colours, sizes and positions.
prior_path = os.path.join(args.work, "prior.pt")
if args.resume and os.path.exists(prior_path):
    state = torch.load(prior_path)
    unet.layout.load_state_dict(state["layout"])
    text_encoder.load_state_dict(state["text_encoder"])
    heads.load_state_dict(state["heads"])
    log("prior: resumed from checkpoint")
elif args.prior_steps > 0:
    torch.manual_seed(args.seed + 5)
    rng = random.Random(args.seed + 5)
    pp = list(text_encoder.parameters()) + list(unet.layout.parameters()) + \
        list(heads.parameters())
    opt = torch.optim.AdamW(pp, lr=args.lr, weight_decay=0.01)
    rows = []
    t0 = time.time()
    for step in range(args.prior_steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 50)
        x0, on_object, ids, keys = batch_for(rng)
        context = text_encoder(ids)
        _, prior = unet.layout(x0, context[:, :L])
        p_loss = prior_loss(prior, x0, on_object)
        ce = parse_loss(context, keys)
        loss = p_loss + ce
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pp, 1.0)
        opt.step()
        rows.append((step, p_loss.item(), ce.item()))
        if step % 25 == 0 or step == args.prior_steps - 1:
            el = time.time() - t0
            log(f"prior step {step} prior-loss {p_loss.item():.4f} parse-ce {ce.item():.4f} "
                f"{el:.0f}s ({el / (step + 1):.2f} s/step)")
    with open(os.path.join(args.work, "prior_loss.csv"), "w") as f:
        csv.writer(f).writerows([("step", "prior_loss", "parse_ce"), *rows])
    torch.save({"layout": unet.layout.state_dict(), "text_encoder": text_encoder.state_dict(),
                "heads": heads.state_dict()}, prior_path)
    log(f"prior: done in {time.time() - t0:.0f}s")
ema = [q.detach().clone() for q in params]


if args.resume and os.path.exists(diff_path):
    state = torch.load(diff_path)
    unet.load_state_dict(state["unet"])
    text_encoder.load_state_dict(state["text_encoder"])
    ema = state["ema"]
    log("diffusion: resumed from checkpoint")
else:
    # Seeded here too, so that a resumed layout prior leaves the diffusion phase the same.
    torch.manual_seed(args.seed + 7)
    rng = random.Random(args.seed + 1)
    opt = torch.optim.AdamW(params + list(heads.parameters()), lr=args.lr, weight_decay=0.01)
    rows = []
    t0 = time.time()
    smooth = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        x0, on_object, ids, keys = batch_for(rng)
        t = torch.randint(0, T, (args.batch,))
        # Offset noise (a random per-image, per-channel shift): SD's noisiest step still keeps
        # sqrt(alpha_bar) = 0.068 of the image, whose mean would otherwise let the starting noise
        # rather than the prompt pick the background colour.
        noise = torch.randn_like(x0) + args.offset_noise * torch.randn(args.batch, layout.CHANNELS, 1, 1)
        ac = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
        target = ac.sqrt() * noise - (1 - ac).sqrt() * x0
        context = text_encoder(ids)
        pred, prior = unet.forward_with_prior(xt, t.float(), context)
        v_mse = (pred - target).pow(2).mean()
        p_loss = prior_loss(prior, x0, on_object)
        loss = v_mse + args.prior_weight * p_loss + parse_loss(context, keys)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, q in zip(ema, params):
                e.mul_(decay).add_(q.detach(), alpha=1 - decay)
        smooth = v_mse.item() if smooth is None else 0.98 * smooth + 0.02 * v_mse.item()
        rows.append((step, v_mse.item(), p_loss.item()))
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t0
            log(f"step {step} v-mse {v_mse.item():.4f} (smoothed {smooth:.4f}) prior-loss "
                f"{p_loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} {el:.0f}s "
                f"({el / (step + 1):.2f} s/step)")
        if step % 250 == 249:
            torch.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                        "ema": ema, "step": step}, diff_path + ".partial")
    with open(os.path.join(args.work, "loss.csv"), "w") as f:
        csv.writer(f).writerows([("step", "v_mse", "prior_loss"), *rows])
    log(f"diffusion: done in {time.time() - t0:.0f}s")
    torch.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                "ema": ema}, diff_path)

# EMA weights are what gets exported.
with torch.no_grad():
    for e, q in zip(ema, params):
        q.copy_(e)
unet.eval()
text_encoder.eval()
log(f"training finished after {time.time() - started:.0f}s")
if args.stop_after == "diffusion":
    sys.exit(0)

if not args.skip_export:
    import export
    export.export_all(args.out, ae, scaling_factor, unet, text_encoder, tokenizer)
    export.plot_losses(args.work, os.path.join(args.out, "loss.png"))
    log(f"exported to {args.out}; total {time.time() - started:.0f}s")
