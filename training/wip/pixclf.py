# ad-hoc: can a per-pixel MLP learn "inside the shape" from (polar features, shape code)?
import sys, random, time, torch, numpy as np, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, 'training')
import model as M, layout, scenes
torch.set_num_threads(1); torch.manual_seed(0)
rng = random.Random(0)
net = nn.Sequential(nn.Conv2d(M.Decoder.GEOMETRY + M.Decoder.POLAR, 48, 1), nn.SiLU(),
                    nn.Conv2d(48, 48, 1), nn.SiLU(), nn.Conv2d(48, 1, 1))
opt = torch.optim.Adam(net.parameters(), 3e-3)
def batch(n=8):
    zs, ms = [], []
    for _ in range(n):
        a = scenes.sample_scene(rng); a['background'] = 'black'; a['colour'] = 'white'
        img = np.asarray(scenes.render(a), dtype=np.float32)[..., 0] / 255
        zs.append(layout.layout_latent(a)); ms.append(torch.from_numpy((img > 0.5).astype(np.float32)))
    return torch.stack(zs), torch.stack(ms)[:, None]
def feats(z):
    g = F.interpolate(M.geometry(z), scale_factor=8.0, mode='bilinear', align_corners=False)
    return torch.cat([g, M.polar(g)], 1)
t0 = time.time()
zt, mt = batch(16)
for step in range(301):
    z, m = batch()
    loss = F.binary_cross_entropy_with_logits(net(feats(z)), m)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0:
        with torch.no_grad():
            pred = net(feats(zt)) > 0
            obj = layout.layout_latent  # noqa
            iou = ((pred & (mt > 0.5)).sum() / (pred | (mt > 0.5)).sum()).item()
        print(step, round(loss.item(), 4), 'test IoU', round(iou, 3), f'{time.time()-t0:.0f}s', flush=True)
