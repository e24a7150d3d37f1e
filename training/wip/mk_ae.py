# ad-hoc: an ae.pt from a decoder checkpoint (encoder untrained) and a dummy diffusion.pt, so that
# `sample.py renoise --start 20` can judge the decoder alone.
import os, sys, torch
sys.path.insert(0, "training")
import model as M
dec, out, sf = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(out, exist_ok=True)
ae = M.AutoencoderKL()
ae.decoder.load_state_dict(torch.load(dec))
torch.save({"model": ae.state_dict(), "scaling_factor": sf}, os.path.join(out, "ae.pt"))
unet, te = M.UNet2DConditionModel(), M.TextEncoder(694)
torch.save({"ema": [p.detach().clone() for p in list(unet.parameters()) + list(te.parameters())]},
           os.path.join(out, "diffusion.pt"))
