import sys, random, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, 'training')
import layout, scenes
rng = random.Random(0)
inter = union = 0
for _ in range(16):
    a = scenes.sample_scene(rng); a['background'] = 'black'; a['colour'] = 'white'
    m = np.asarray(scenes.render(a), dtype=np.float32)[..., 0] / 255 > 0.5
    a2 = dict(a, shape='circle')
    d = np.asarray(scenes.render(a2), dtype=np.float32)[..., 0] / 255 > 0.5
    inter += (m & d).sum(); union += (m | d).sum()
print('disc-as-circle IoU', inter / union)
