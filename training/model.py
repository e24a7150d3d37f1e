"""The three networks of shapes-tiny, with diffusers' module names so that exported ONNX node
names read like real Stable Diffusion exports (`/down_blocks.1/attentions.0/transformer_blocks.0/
attn2/to_k/MatMul`).

- `TextEncoder`: CLIP-like (token + position embeddings, pre-LN transformer layers, final LN),
  except that the first CONTEXT_TOKENS tokens attend in both directions.
- `UNet2DConditionModel`: ResNet blocks, cross-attention transformer blocks at 1/2 and 1/4 of the
  latent resolution, skip connections, sinusoidal timestep embedding. Deviations from SD: a
  `LayoutPrior` (text + cell position -> a coarse guess of the clean latents) whose guess joins the
  input and whose features join the 1/4-resolution path; two coordinate channels (x and y in
  [-1, 1], computed from the sample's shape inside the graph) concatenated before `conv_in`.
- `AutoencoderKL`: 8x down to 8 latent channels; the latent space is designed
  (training/layout.py): the decoder renders scenes from their layout latents and the encoder finds
  the layout latents in a picture.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


CONTEXT_TOKENS = 32


def groups(ch):
    return 8 if ch % 8 == 0 else 1


# ---------------------------------------------------------------------------------------------
# Text encoder


class CLIPAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        return self.out_proj(
            attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, mask))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(dim)
        self.self_attn = CLIPAttention(dim, heads)
        self.layer_norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, mlp)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(mlp, dim)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class TextEncoder(nn.Module):
    """input_ids [B, 77] -> last_hidden_state [B, 77, dim]. Unlike CLIP, the first
    CONTEXT_TOKENS tokens attend to each other in both directions (so "red" already knows whether
    it names the shape or the background); later tokens attend causally. Either way no state among
    the first CONTEXT_TOKENS depends on a later token, so training on the first CONTEXT_TOKENS ids
    gives the same states as serving 77."""

    def __init__(self, vocab_size, dim=128, layers=2, heads=4, mlp=256, max_positions=77):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab_size, dim)
        self.embeddings.position_embedding = nn.Embedding(max_positions, dim)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            [CLIPEncoderLayer(dim, heads, mlp) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(dim)
        nn.init.normal_(self.embeddings.token_embedding.weight, std=0.02)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.01)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embeddings.token_embedding(input_ids) + \
            self.embeddings.position_embedding(positions)[None]
        n = input_ids.shape[1]
        idx = torch.arange(n, device=input_ids.device)
        hidden = (idx[None, :] > idx[:, None]) & (
            (idx[None, :] >= CONTEXT_TOKENS) | (idx[:, None] >= CONTEXT_TOKENS))
        mask = hidden.to(torch.float32) * -1e9
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


# ---------------------------------------------------------------------------------------------
# UNet


def attention(q, k, v, heads, mask=None):
    b, n, d = q.shape
    m = k.shape[1]
    h = d // heads
    q = q.reshape(b, n, heads, h).transpose(1, 2)
    k = k.reshape(b, m, heads, h).transpose(1, 2)
    v = v.reshape(b, m, heads, h).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(h))
    if mask is not None:
        scores = scores + mask
    w = torch.softmax(scores, dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, n, d)


class Attention(nn.Module):
    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, context=None):
        c = x if context is None else context
        return self.to_out[0](attention(self.to_q(x), self.to_k(c), self.to_v(c), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=2):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Self-attention (optional: left out at the larger resolution to save compute),
    cross-attention to the text, feed-forward."""

    def __init__(self, dim, context_dim, heads, self_attention=True):
        super().__init__()
        self.self_attention = self_attention
        if self_attention:
            self.norm1 = nn.LayerNorm(dim)
            self.attn1 = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        if self.self_attention:
            x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, ch, context_dim, heads, self_attention=True):
        super().__init__()
        self.norm = nn.GroupNorm(groups(ch), ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(ch, context_dim, heads, self_attention)])
        self.proj_out = nn.Linear(ch, ch)

    def forward(self, x, context):
        b, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        y = self.proj_in(y)
        for blk in self.transformer_blocks:
            y = blk(y, context)
        y = self.proj_out(y).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + y


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups(cin), cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups(cout), cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, temb, context_dim, heads, attn, down, self_attention=True):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin, cout, temb)])
        if attn:
            self.attentions = nn.ModuleList(
                [Transformer2DModel(cout, context_dim, heads, self_attention)])
        self.has_attn = attn
        if down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout)])
        self.has_down = down

    def forward(self, x, temb, context):
        skips = []
        for i, res in enumerate(self.resnets):
            x = res(x, temb)
            if self.has_attn:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.has_down:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    def __init__(self, cin, cout, skip_chs, temb, context_dim, heads, attn, up,
                 self_attention=True):
        super().__init__()
        res, c = [], cin
        for s in skip_chs:
            res.append(ResnetBlock2D(c + s, cout, temb))
            c = cout
        self.resnets = nn.ModuleList(res)
        if attn:
            self.attentions = nn.ModuleList(
                [Transformer2DModel(cout, context_dim, heads, self_attention) for _ in skip_chs])
        self.has_attn = attn
        if up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])
        self.has_up = up

    def forward(self, x, skips, temb, context):
        for i, res in enumerate(self.resnets):
            x = res(torch.cat([x, skips.pop()], dim=1), temb)
            if self.has_attn:
                x = self.attentions[i](x, context)
        if self.has_up:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    def __init__(self, ch, temb, context_dim, heads):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb), ResnetBlock2D(ch, ch, temb)])
        self.attentions = nn.ModuleList([Transformer2DModel(ch, context_dim, heads)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_features(t, dim):
    """diffusers `Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float().reshape(-1, 1) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def coord_channels(x):
    """[B, 2, H, W]: x and y pixel-centre coordinates in [-1, 1]."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, dtype=x.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, dtype=x.dtype) + 0.5) * (2.0 / w) - 1.0
    gy = ys.reshape(1, 1, h, 1).expand(b, 1, h, w)
    gx = xs.reshape(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([gx, gy], dim=1)


def fourier_coords(x, bands=4):
    """[B, 2 + 4 * bands, H, W]: the coordinate channels of `x` and their sines and cosines at
    frequencies pi, 2 pi, ... 2^(bands-1) pi (a position code a linear layer can read)."""
    c = coord_channels(x)
    feats = [c]
    for k in range(bands):
        feats += [torch.sin(c * (math.pi * 2 ** k)), torch.cos(c * (math.pi * 2 ** k))]
    return torch.cat(feats, dim=1)


class LayoutPrior(nn.Module):
    """Text -> coarse scene layout, read by the UNet: a conditional neural field. At each cell of
    the UNet's quarter-resolution grid an MLP reads the cell's position (Fourier features) plus the
    caption (the mean of its token states) and gives `features`; convolutions upsample them to
    `prior`, a guess of the clean latents. The UNet gets `prior` as extra input channels and
    `features` added at quarter resolution; training also fits `prior` to the clean latents
    directly. Its input is the text and the position alone, not the noisy sample, so "top left"
    has a short path to the top-left cells, which cross-attention from noisy features did not
    find in the CPU budget (models/shapes-tiny/README.md)."""

    def __init__(self, dim=128, context_dim=128, hidden=256, bands=4, out_channels=8):
        super().__init__()
        self.bands = bands
        self.text_proj = nn.Linear(context_dim, hidden)
        self.pos_proj = nn.Linear(2 + 4 * bands, hidden)
        self.mlp = nn.ModuleList([nn.Linear(hidden, hidden), nn.Linear(hidden, dim)])
        self.conv_up = nn.ModuleList([
            nn.Conv2d(dim, 64, 3, padding=1),   # at 1/4
            nn.Conv2d(64, 32, 3, padding=1),    # at 1/2
            nn.Conv2d(32, 32, 3, padding=1),    # at 1
        ])
        self.conv_out = nn.Conv2d(32, out_channels, 3, padding=1)

    def forward(self, sample, context):
        """-> (features [B, dim, ceil(h/4), ceil(w/4)], prior [B, out_channels, h, w])."""
        b, _, h, w = sample.shape
        grid = F.avg_pool2d(sample[:, :1], 4, stride=4, ceil_mode=True)
        gh, gw = grid.shape[2], grid.shape[3]
        pos = fourier_coords(grid, self.bands).permute(0, 2, 3, 1).reshape(b, gh * gw, -1)
        y = self.pos_proj(pos) + self.text_proj(context.mean(dim=1))[:, None]
        y = self.mlp[1](F.silu(self.mlp[0](F.silu(y))))
        feats = y.reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
        y = F.silu(self.conv_up[0](feats))
        for conv in self.conv_up[1:]:
            y = F.silu(conv(F.interpolate(y, scale_factor=2.0, mode="nearest")))
        return feats, self.conv_out(y)[:, :, :h, :w]


class UNet2DConditionModel(nn.Module):
    """sample [B, 8, h, w], timestep (scalar or [B]), encoder_hidden_states [B, 77, C] -> the
    prediction (v: see train.py). `forward_with_prior` also returns the layout prior's guess."""

    def __init__(self, in_channels=8, channels=(32, 64, 128), context_dim=128, heads=4,
                 temb_in=64, self_attention_16=False):
        super().__init__()
        c0, c1, c2 = channels
        temb = c0 * 4
        self.temb_in = temb_in
        self.time_embedding = TimestepEmbedding(temb_in, temb)
        self.layout = LayoutPrior(c2, context_dim, out_channels=in_channels)
        self.layout_proj = nn.Conv2d(c2, c1, 1)
        # Input: the sample, its coordinate channels and the layout prior.
        self.conv_in = nn.Conv2d(in_channels * 2 + 2, c0, 3, padding=1)
        self.down_blocks = nn.ModuleList([
            DownBlock(c0, c0, temb, context_dim, heads, attn=False, down=True),
            DownBlock(c0, c1, temb, context_dim, heads, attn=True, down=True,
                      self_attention=self_attention_16),
            DownBlock(c1, c2, temb, context_dim, heads, attn=True, down=False),
        ])
        self.mid_block = MidBlock(c2, temb, context_dim, heads)
        # Skips, in push order: conv_in c0, d0.res c0, d0.down c0, d1.res c1, d1.down c1, d2.res c2
        self.up_blocks = nn.ModuleList([
            UpBlock(c2, c2, [c2, c1], temb, context_dim, heads, attn=True, up=True),
            UpBlock(c2, c1, [c1, c0], temb, context_dim, heads, attn=True, up=True,
                    self_attention=self_attention_16),
            UpBlock(c1, c0, [c0, c0], temb, context_dim, heads, attn=False, up=False),
        ])
        self.conv_norm_out = nn.GroupNorm(groups(c0), c0, eps=1e-5)
        self.conv_out = nn.Conv2d(c0, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.forward_with_prior(sample, timestep, encoder_hidden_states)[0]

    def forward_with_prior(self, sample, timestep, encoder_hidden_states):
        b = sample.shape[0]
        # Only the first CONTEXT_TOKENS token states are read (grammar captions are <= 16 tokens).
        encoder_hidden_states = encoder_hidden_states[:, :CONTEXT_TOKENS]
        t = timestep.reshape(-1).expand(b) if timestep.dim() > 0 else timestep.reshape(1).expand(b)
        temb = self.time_embedding(timestep_features(t, self.temb_in))
        feats, prior = self.layout(sample, encoder_hidden_states)
        x = self.conv_in(torch.cat([sample, coord_channels(sample), prior], dim=1))
        skips = [x]
        for i, blk in enumerate(self.down_blocks):
            if i == 2:
                x = x + self.layout_proj(feats)
            x, s = blk(x, temb, encoder_hidden_states)
            skips.extend(s)
        x = self.mid_block(x, temb, encoder_hidden_states)
        for blk in self.up_blocks:
            x = blk(x, skips, temb, encoder_hidden_states)
        return self.conv_out(F.silu(self.conv_norm_out(x))), prior


# ---------------------------------------------------------------------------------------------
# Autoencoder


class LatentUNet(nn.Module):
    """A small UNet at latent resolution (channels `chs` at 1, 1/2, 1/4): its 1/4 level sees about
    20 cells, more than the largest object's disc (13 cells across), so every cell can know where
    it lies in its object."""

    def __init__(self, chs=(64, 96, 128)):
        super().__init__()
        c0, c1, c2 = chs
        self.res_in = ResnetBlock2D(c0, c0, 0)
        self.down = nn.ModuleList([nn.Conv2d(c0, c1, 3, stride=2, padding=1),
                                   nn.Conv2d(c1, c2, 3, stride=2, padding=1)])
        self.res_half = ResnetBlock2D(c1, c1, 0)
        self.mid = nn.ModuleList([ResnetBlock2D(c2, c2, 0), ResnetBlock2D(c2, c2, 0)])
        self.up = nn.ModuleList([nn.Conv2d(c2, c1, 3, padding=1), nn.Conv2d(c1, c0, 3, padding=1)])
        self.res_up = nn.ModuleList([ResnetBlock2D(2 * c1, c1, 0), ResnetBlock2D(2 * c0, c0, 0)])

    def forward(self, x):
        a = self.res_in(x)
        b = self.res_half(F.silu(self.down[0](a)))
        c = F.silu(self.down[1](b))
        for m in self.mid:
            c = m(c)
        for up, res, skip in zip(self.up, self.res_up, (b, a)):
            c = F.silu(up(F.interpolate(c, scale_factor=2.0, mode="nearest")))
            c = res(torch.cat([c[:, :, :skip.shape[2], :skip.shape[3]], skip], dim=1))
        return c


class Encoder(nn.Module):
    """RGB [B, 3, H, W] -> layout latents [B, 8, H/8, W/8] (training/layout.py)."""

    def __init__(self, latent=8, chs=(16, 32, 64)):
        super().__init__()
        c0, c1, c2 = chs
        self.conv_in = nn.Conv2d(3, c0, 2, stride=2)
        self.down = nn.ModuleList([nn.Conv2d(c0, c1, 2, stride=2), nn.Conv2d(c1, c2, 2, stride=2)])
        self.unet = LatentUNet((c2, 64, 96))
        self.conv_norm_out = nn.GroupNorm(groups(c2), c2)
        self.conv_out = nn.Conv2d(c2, latent, 3, padding=1)

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for d in self.down:
            x = F.silu(d(x))
        x = self.unet(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    """Layout latents [B, 8, h, w] -> RGB [B, 3, 8h, 8w], pixel by pixel. Three convolutions at
    latent resolution tidy the latents (a diffusion model leaves them soft and noisy; identity at
    initialisation), and bilinear upsampling gives every pixel its background and object colour
    codes, shape code and place in its object (exact, as the place is linear in the latents:
    training/layout.py). Then, per pixel, an MLP of the shape code and the place gives the share
    of the pixel the object covers, and another maps a colour code to RGB:
    rgb = background + share * (object - background). Training also fits the share to the
    objects' true coverage (train.py)."""

    def __init__(self, latent=8, hidden=96, shapes=6, sharpness=10.0):
        super().__init__()
        # The shape codes' directions (training/layout.py SHAPE_CODES: evenly spaced from angle
        # 0), against which the share MLP reads a pixel's shape code as near-one-hot weights, so
        # that each shape gets its own outline rather than a blend of its neighbours' (with the
        # raw code as input, squares came out with round tops).
        angles = torch.arange(shapes, dtype=torch.float32) * (2 * math.pi / shapes)
        self.register_buffer("shape_directions",
                             torch.stack([angles.cos(), angles.sin()], dim=1)[:, :, None, None])
        self.sharpness = sharpness
        self.tidy = nn.Sequential(
            nn.Conv2d(latent, 48, 3, padding=1, padding_mode="replicate"), nn.SiLU(),
            nn.Conv2d(48, 48, 3, padding=1, padding_mode="replicate"), nn.SiLU(),
            nn.Conv2d(48, latent, 3, padding=1, padding_mode="replicate"))
        nn.init.zeros_(self.tidy[-1].weight)
        nn.init.zeros_(self.tidy[-1].bias)
        self.share = nn.Sequential(
            nn.Conv2d(shapes + 1 + 2 + 8, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, hidden, 1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, 1, 1))
        self.colour = nn.Sequential(
            nn.Conv2d(2, 32, 1), nn.SiLU(), nn.Conv2d(32, 32, 1), nn.SiLU(), nn.Conv2d(32, 3, 1))

    def forward(self, z):
        z = z + self.tidy(z)
        return self.pixels(F.interpolate(z, scale_factor=8.0, mode="bilinear", align_corners=False))

    def sample_at(self, z, grid):
        """The upsampled latents [B, 8, N, 1] at chosen pixels only, for `pixels` (what training
        needs: the per-pixel MLPs cost ~13k multiply-adds a pixel): `grid` [B, N, 1, 2] holds
        their centres in grid_sample's [-1, 1] coordinates, which then samples exactly as
        `forward`'s upsampling does."""
        z = z + self.tidy(z)
        return F.grid_sample(z, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def pixels(self, p):
        """Upsampled latents [B, 8, ...] -> RGB [B, 3, ...]."""
        background, obj = self.colour(p[:, 0:2]), self.colour(p[:, 2:4])
        return background + self.share_of(p) * (obj - background)

    def share_of(self, p):
        """Upsampled latents [B, 8, ...] -> the share of each pixel the object covers [B, 1, ...]
        from the shape code (as weights over the shapes, and its length: 2 near an object, 0 far
        from any) and the place, also as sines and cosines (at 1 and 2 cycles a radius: a star's
        points and a heart's notch are sharper functions of them)."""
        code, uv = p[:, 4:6], p[:, 6:8]
        length = (code[:, :1] ** 2 + code[:, 1:] ** 2 + 1e-6).sqrt()
        cosines = F.conv2d(code, self.shape_directions) / length
        weights = torch.softmax(self.sharpness * cosines, dim=1)
        waves = [f(uv * (math.pi * k)) for k in (1, 2) for f in (torch.sin, torch.cos)]
        return torch.sigmoid(self.share(torch.cat([weights, length / 2, uv, *waves], dim=1)))


class AutoencoderKL(nn.Module):
    """Deterministic autoencoder: images in [-1, 1] <-> 8-channel layout latents at 1/8
    resolution."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x):
        return self.decoder(self.encoder(x))
