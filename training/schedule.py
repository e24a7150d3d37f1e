"""The noise schedule shapes-tiny is trained and sampled with: SD's scaled-linear betas
(0.00085-0.012, 1000 steps) rescaled to zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise
Schedules and Sample Steps are Flawed"; diffusers `rescale_betas_zero_snr`).

Why: with SD's betas the noisiest training input still holds sqrt(alpha_bar_999) = 0.068 of the
image, and a large flat shape is detectable in it (a matched filter over its ~100 latent pixels
sees it at SNR ~2). The model learns to find the layout in the noise instead of reading it from the
prompt; sampling starts from noise that holds no image, so the layout followed the seed and
position words had no effect. At zero terminal SNR the first step sees pure noise in training too,
and only the prompt can say where things go. Needs v-prediction (epsilon is undefined there).
"""

import numpy as np
import torch

T = 1000


def alphas_cumprod() -> torch.Tensor:
    """float64 [T]; the last entry is exactly 0."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
    s = torch.cumprod(1 - betas, 0).sqrt()
    s = (s - s[-1]) * (s[0] / (s[0] - s[-1]))
    return s ** 2


def euler_sigmas(steps: int):
    """The served scheduler's timesteps and sigmas (diffusers EulerDiscreteScheduler, linspace
    spacing, rescale_betas_zero_snr: alpha_bar_999 clamped to 2^-24, so sigma_max ~ 4096)."""
    ac = alphas_cumprod().clone()
    ac[-1] = 2.0 ** -24
    table = ((1 - ac) / ac).sqrt()
    ts = torch.linspace(T - 1, 0, steps, dtype=torch.float64)
    sig = np.interp(ts.numpy(), np.arange(T), table.numpy())
    return ts, torch.tensor(np.append(sig, 0.0))
