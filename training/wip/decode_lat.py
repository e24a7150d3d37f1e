# ad-hoc: decode saved latents (latdump.py) with a decoder checkpoint, write PNGs + truth.json
import sys, torch
sys.path.insert(0, 'training')
import model as M, sample as S
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
data = torch.load(sys.argv[1])
d = M.Decoder(); d.load_state_dict(torch.load(sys.argv[2])); d.eval()
with torch.no_grad():
    imgs = ((d(data["latents"]).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
S.write_folder(sys.argv[3], list(imgs), [it["expect"] for it in data["items"]])
