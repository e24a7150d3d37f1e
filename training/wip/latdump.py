import sys, json, torch
sys.path.insert(0, 'training')
import sample as S, layout
torch.set_num_threads(1)
ck, work, out, g = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sm = S.Sampler(ck, work, 20, g)
items = json.load(open(S.HELDOUT))["items"][:96]
lat = []
with torch.no_grad():
    for b in range(0, 96, 16):
        ch = items[b:b + 16]
        x = sm.noise([it["seed"] for it in ch]) * sm.sigmas[0]
        lat.extend(sm.sample([it["prompt"] for it in ch], x)[1])
torch.save({"latents": torch.stack(lat), "items": items}, out)
for z, it in zip(lat, items):
    r = layout.read_layout(z)
    if r.get("count") != it["expect"].get("count"):
        print(it["prompt"], it["seed"], "read", r)
