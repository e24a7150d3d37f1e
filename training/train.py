"""Trains shapes-tiny from nothing and exports it as a diffusers/Optimum ONNX folder.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 training/train.py --out models/shapes-tiny

Phases (each checkpointed under --work, so an interrupted run resumes with --resume):
1. autoencoder: 8x-downsampling conv autoencoder (4 latent channels) on 64x64 crops (two per
   scene) of rendered 256x256 scenes, L1 loss on pixels and on pixel differences (sharp edges);
   small noise on the latents during training keeps the decoder tolerant of imperfect latents;
   then the latent std over fresh scenes fixes `scaling_factor`.
1b. decoder fine-tune: encoder frozen, decoder trained on 128x128 crops with MSE + L1.
2a. layout prior: the text encoder and the UNet's layout prior (model.py `LayoutPrior`) alone,
   fitting the prior to the clean latents (object pixels weighted up), plus training-only heads
   that read each named attribute back from the caption's mean token state.
2. diffusion: text encoder + UNet jointly, v-prediction MSE on SD's scaled-linear DDPM schedule
   (1000 steps) with offset noise, plus the layout prior's loss and the parsing heads' loss;
   15 % of captions dropped to "" (classifier-free guidance), EMA of the weights. Scenes are
   rendered and encoded on the fly; captions that name a held-out attribute tuple
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
import model as M  # noqa: E402
import scenes  # noqa: E402
import tokenizer as tok  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--out", default="models/shapes-tiny")
p.add_argument("--work", default="training/runs/shapes-tiny")
p.add_argument("--seed", type=int, default=1234)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ae-steps", type=int, default=1500)
p.add_argument("--ae-batch", type=int, default=16)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--ema", type=float, default=0.995)
p.add_argument("--cond-drop", type=float, default=0.15)
p.add_argument("--decoder-steps", type=int, default=1000)
p.add_argument("--offset-noise", type=float, default=0.1)
p.add_argument("--prior-weight", type=float, default=1.0,
               help="weight of the layout prior's own loss in the diffusion phase")
p.add_argument("--object-weight", type=float, default=8.0,
               help="extra weight of object pixels in the layout prior's loss")
p.add_argument("--prior-steps", type=int, default=600)
p.add_argument("--resume", action="store_true")
p.add_argument("--stop-after", choices=["ae", "decoder", "diffusion"], default=None)
p.add_argument("--skip-export", action="store_true")
args = p.parse_args()

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
# 1. Autoencoder
ae_path = os.path.join(args.work, "ae.pt")
ae = M.AutoencoderKL()
if args.resume and os.path.exists(ae_path):
    state = torch.load(ae_path)
    ae.load_state_dict(state["model"])
    scaling_factor = state["scaling_factor"]
    log(f"ae: resumed, scaling_factor {scaling_factor:.5f}")
else:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    rows = []
    t0 = time.time()
    for step in range(args.ae_steps):
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.ae_steps)))
        _, imgs = render_batch(rng, args.ae_batch)
        crops = []
        for im in imgs:
            for _ in range(2):
                y, x = rng.randrange(0, 193, 8), rng.randrange(0, 193, 8)
                crops.append(im[:, y:y + 64, x:x + 64])
        x = torch.stack(crops)
        z = ae.encoder(x)
        rec = ae.decoder(z + 0.05 * z.detach().std() * torch.randn_like(z))
        # L1 on pixels and on horizontal/vertical differences (keeps edges sharp).
        loss_rec = (rec - x).abs().mean() + \
            (rec.diff(dim=2) - x.diff(dim=2)).abs().mean() + \
            (rec.diff(dim=3) - x.diff(dim=3)).abs().mean()
        loss = loss_rec + 1e-4 * z.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append((step, loss_rec.item()))
        if step % 50 == 0 or step == args.ae_steps - 1:
            log(f"ae step {step} rec {loss_rec.item():.5f} z-std {z.std().item():.3f} "
                f"{time.time() - t0:.0f}s")
    with open(os.path.join(args.work, "ae_loss.csv"), "w") as f:
        csv.writer(f).writerows([("step", "loss"), *rows])
    ae.eval()
    with torch.no_grad():
        zs = torch.cat([ae.encoder(render_batch(rng, 32)[1]) for _ in range(8)])
    scaling_factor = float(1.0 / zs.std())
    log(f"ae: done in {time.time() - t0:.0f}s; latent mean {zs.mean():.4f} std {zs.std():.4f} "
        f"-> scaling_factor {scaling_factor:.5f}")
    torch.save({"model": ae.state_dict(), "scaling_factor": scaling_factor}, ae_path)
# 1b. Decoder fine-tune: the encoder (and so the latent space the diffusion model learns) stays
# fixed; the decoder is trained further on 128x128 crops with MSE + L1, which gives flatter
# colours and sharper edges than phase 1 alone.
dec_path = os.path.join(args.work, "decoder.pt")
if args.resume and os.path.exists(dec_path):
    ae.decoder.load_state_dict(torch.load(dec_path))
    log("decoder: resumed")
elif args.decoder_steps > 0:
    torch.manual_seed(args.seed + 2)
    rng = random.Random(args.seed + 2)
    for q in ae.encoder.parameters():
        q.requires_grad_(False)
    ae.decoder.train()
    opt = torch.optim.Adam(ae.decoder.parameters(), lr=1e-3)
    rows = []
    t0 = time.time()
    for step in range(args.decoder_steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.decoder_steps)))
        _, imgs = render_batch(rng, 8)
        crops = []
        for im in imgs:
            for _ in range(2):
                y, x = rng.randrange(0, 129, 8), rng.randrange(0, 129, 8)
                crops.append(im[:, y:y + 128, x:x + 128])
        x = torch.stack(crops)
        with torch.no_grad():
            z = ae.encoder(x)
        rec = ae.decoder(z + 0.05 * z.std() * torch.randn_like(z))
        loss = F.mse_loss(rec, x) + 0.5 * (rec - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append((step, loss.item()))
        if step % 50 == 0 or step == args.decoder_steps - 1:
            log(f"decoder step {step} loss {loss.item():.5f} {time.time() - t0:.0f}s")
    with open(os.path.join(args.work, "decoder_loss.csv"), "w") as f:
        csv.writer(f).writerows([("step", "loss"), *rows])
    torch.save(ae.decoder.state_dict(), dec_path)
    log(f"decoder: done in {time.time() - t0:.0f}s")
ae.eval()
for q in ae.parameters():
    q.requires_grad_(False)
if args.stop_after in ("ae", "decoder"):
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


def prior_loss(prior, x0, imgs):
    """MSE of the layout prior to the clean latents, 1 + args.object_weight on latent pixels
    covered by objects (objects fill ~10 % of a scene; unweighted, the prior learns the
    background first and objects only after ~700 steps)."""
    background = imgs.flatten(2).median(dim=2).values[:, :, None, None]
    on_object = ((imgs - background).abs().amax(dim=1, keepdim=True) > 0.15).float()
    weight = 1 + args.object_weight * F.avg_pool2d(on_object, 8)
    return ((prior - x0).pow(2) * weight).mean()


def batch_for(rng):
    attrs, imgs = render_batch(rng, args.batch)
    with torch.no_grad():
        x0 = ae.encoder(imgs) * scaling_factor
    captions = [caption_for(a, rng) for a in attrs]
    ids = torch.tensor([tokenizer.encode(c)[:L] for c, _ in captions])
    return imgs, x0, ids, [k for _, k in captions]


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
        imgs, x0, ids, keys = batch_for(rng)
        context = text_encoder(ids)
        _, prior = unet.layout(x0, context[:, :L])
        p_loss = prior_loss(prior, x0, imgs)
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
    rng = random.Random(args.seed + 1)
    opt = torch.optim.AdamW(params + list(heads.parameters()), lr=args.lr, weight_decay=0.01)
    rows = []
    t0 = time.time()
    smooth = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        imgs, x0, ids, keys = batch_for(rng)
        t = torch.randint(0, T, (args.batch,))
        # Offset noise (a random per-image, per-channel shift): SD's noisiest step still keeps
        # sqrt(alpha_bar) = 0.068 of the image, whose mean would otherwise let the starting noise
        # rather than the prompt pick the background colour.
        noise = torch.randn_like(x0) + args.offset_noise * torch.randn(args.batch, 4, 1, 1)
        ac = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
        target = ac.sqrt() * noise - (1 - ac).sqrt() * x0
        context = text_encoder(ids)
        pred, prior = unet.forward_with_prior(xt, t.float(), context)
        v_mse = (pred - target).pow(2).mean()
        p_loss = prior_loss(prior, x0, imgs)
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
