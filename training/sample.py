"""Samples a training checkpoint in PyTorch (Euler, epsilon, CFG), for watching a run:

    /usr/bin/python3 training/sample.py training/runs/shapes-tiny/diffusion.pt.partial out.png

Rows are prompts, columns seeds. Uses the EMA weights.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import tokenizer as tok  # noqa: E402

PROMPTS = [
    "a red circle on a blue background",
    "a large yellow star in the top left on a black background",
    "two green triangles on a white background",
    "a small purple heart in the bottom right on an orange background",
    "a white ring on a red background",
    "a blue square at the bottom on a yellow background",
]


def main(ckpt, out, steps=20, guidance=5.0, seeds=4):
    torch.set_num_threads(1)
    work = os.path.dirname(ckpt)
    t = tok.Tokenizer()
    ae = M.AutoencoderKL()
    st = torch.load(os.path.join(work, "ae.pt"))
    ae.load_state_dict(st["model"])
    sf = st["scaling_factor"]
    if os.path.exists(os.path.join(work, "decoder.pt")):
        ae.decoder.load_state_dict(torch.load(os.path.join(work, "decoder.pt")))
    unet, te = M.UNet2DConditionModel(), M.TextEncoder(t.vocab_size)
    state = torch.load(ckpt)
    unet.load_state_dict(state["unet"])
    te.load_state_dict(state["text_encoder"])
    params = list(unet.parameters()) + list(te.parameters())
    with torch.no_grad():
        for e, q in zip(state["ema"], params):
            q.copy_(e)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    sig_table = ((1 - ac) / ac).sqrt()
    ts = torch.linspace(999, 0, steps, dtype=torch.float64)
    sigmas = np.interp(ts.numpy(), np.arange(1000), sig_table.numpy())
    sigmas = torch.tensor(np.append(sigmas, 0.0))
    rows = []
    with torch.no_grad():
        uncond = te(torch.tensor([t.encode("")]))
        for p in PROMPTS:
            cond = te(torch.tensor([t.encode(p)]))
            imgs = []
            for s in range(seeds):
                g = torch.Generator().manual_seed(100 + s)
                x = torch.randn(1, 4, 32, 32, generator=g, dtype=torch.float64) * sigmas[0]
                for i in range(steps):
                    sig = sigmas[i]
                    inp = (x / (sig ** 2 + 1).sqrt()).float()
                    e = unet(torch.cat([inp, inp]), torch.tensor(float(ts[i])),
                             torch.cat([uncond, cond]))
                    eps = (e[0:1] + guidance * (e[1:2] - e[0:1])).double()
                    x0 = x - sig * eps
                    x = x + (x - x0) / sig * (sigmas[i + 1] - sig)
                img = ae.decoder((x / sf).float())
                imgs.append(img)
            rows.append(torch.cat(imgs, dim=3))
    grid = torch.cat(rows, dim=2)[0]
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    from PIL import Image
    Image.fromarray(arr).save(out)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
