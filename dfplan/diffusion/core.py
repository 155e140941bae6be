"""Noise levels are integers k in [0, K]: k = 0 is clean data, k = K is (nearly) pure noise.

`alphas_bar[k]` is the signal fraction at level k, with `alphas_bar[0] = 1`. All functions broadcast over
any leading shape; per-token levels come as an integer tensor shaped like the tokens without the last dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    alphas_bar: torch.Tensor  # [K + 1], alphas_bar[0] = 1

    @property
    def num_levels(self) -> int:
        return self.alphas_bar.numel() - 1

    def to(self, device) -> "NoiseSchedule":
        return NoiseSchedule(self.alphas_bar.to(device))


def make_noise_schedule(kind: str = "linear", num_levels: int = 1000) -> NoiseSchedule:
    """Betas as in DDPM (linear), Nichol & Dhariwal (cosine), or a sigmoid ramp."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    k = torch.arange(num_levels + 1, dtype=torch.float64)
    scale = 1000.0 / num_levels  # keep the total noise the same whatever K is
    if kind == "linear":
        betas = torch.linspace(scale * 1e-4, scale * 2e-2, num_levels, dtype=torch.float64)
    elif kind == "cosine":
        f = torch.cos(((k / num_levels) + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    elif kind == "sigmoid":
        t = torch.linspace(-6, 6, num_levels, dtype=torch.float64)
        betas = (torch.sigmoid(t) * (2e-2 - 1e-4) + 1e-4) * scale
    else:
        raise ValueError(f"noise schedule must be 'linear', 'cosine' or 'sigmoid', got {kind!r}")
    alphas_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    return NoiseSchedule(alphas_bar.float())


def _ab(schedule: NoiseSchedule, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alphas_bar at levels k, shaped to broadcast against `like` ([..., D])."""
    return schedule.alphas_bar.to(like.device)[k].unsqueeze(-1).to(like.dtype)


# Each function below comes in two forms: by levels k (gathers alphas_bar itself) and `*_at` by `ab`, the
# alphas_bar values at the tokens' levels, any shape that broadcasts against the tokens [..., D]. The sampler
# gathers `ab` once per scheduling row and uses the `*_at` forms; the arithmetic is the same.
def q_sample_at(x0: torch.Tensor, ab: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def x0_from_eps_at(x_k, ab, eps):
    return (x_k - (1 - ab).sqrt() * eps) / ab.sqrt()


def eps_from_x0_at(x_k, ab, x0):
    return (x_k - ab.sqrt() * x0) / (1 - ab).sqrt().clamp(min=1e-8)


def to_x0_at(objective: str, output, x_k, ab):
    if objective == "x0":
        return output
    if objective == "eps":
        return x0_from_eps_at(x_k, ab, output)
    if objective == "v":
        return ab.sqrt() * x_k - (1 - ab).sqrt() * output
    raise ValueError(f"prediction objective must be 'x0', 'eps' or 'v', got {objective!r}")


def ddim_step_at(x_k, x0_hat, ab, ab_next, eta: float = 0.0, noise=None, eps_hat=None, unchanged=None):
    """`ddim_step` by alphas_bar values; `unchanged` (bool, broadcastable to x_k, or None when every element
    moves): where the level stays, the input is returned as it is."""
    if eps_hat is None:
        eps_hat = eps_from_x0_at(x_k, ab, x0_hat)
    x_next = ab_next.sqrt() * x0_hat
    if eta > 0:
        sigma = eta * ((1 - ab_next) / (1 - ab).clamp(min=1e-8) * (1 - ab / ab_next)).clamp(min=0).sqrt()
        x_next = x_next + (1 - ab_next - sigma**2).clamp(min=0).sqrt() * eps_hat
        x_next = x_next + sigma * (torch.randn_like(x_k) if noise is None else noise)
    else:  # sigma = 0
        x_next = x_next + (1 - ab_next).clamp(min=0).sqrt() * eps_hat
    return x_next if unchanged is None else torch.where(unchanged, x_k, x_next)


def q_sample(x0: torch.Tensor, k: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    return q_sample_at(x0, _ab(schedule, k, x0), noise)


def x0_from_eps(x_k, k, eps, schedule):
    return x0_from_eps_at(x_k, _ab(schedule, k, x_k), eps)


def eps_from_x0(x_k, k, x0, schedule):
    return eps_from_x0_at(x_k, _ab(schedule, k, x_k), x0)


def target_for(objective: str, x0, noise, k, schedule):
    """The regression target of a network that predicts `objective` in {x0, eps, v}."""
    if objective == "x0":
        return x0
    if objective == "eps":
        return noise
    if objective == "v":
        ab = _ab(schedule, k, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0
    raise ValueError(f"prediction objective must be 'x0', 'eps' or 'v', got {objective!r}")


def to_x0(objective: str, output, x_k, k, schedule):
    """Convert a network output of the given parameterization into an x0 estimate."""
    return to_x0_at(objective, output, x_k, _ab(schedule, k, x_k) if objective != "x0" else None)


def ddim_step(x_k, x0_hat, k, k_next, schedule, eta: float = 0.0, noise=None, eps_hat=None):
    """One DDIM update from level k to k_next < k (per element). Where k_next == k the input is returned."""
    return ddim_step_at(x_k, x0_hat, _ab(schedule, k, x_k), _ab(schedule, k_next, x_k), eta, noise, eps_hat,
                        unchanged=(k == k_next).unsqueeze(-1))


def sampling_levels(num_levels: int, steps: int) -> torch.Tensor:
    """Map DDIM step indices 0..steps onto noise levels 0..K (index 0 = clean, index `steps` = K)."""
    if not 1 <= steps <= num_levels:
        raise ValueError(f"DDIM steps must be in [1, {num_levels}], got {steps}")
    return torch.round(torch.linspace(0, num_levels, steps + 1)).long()


def ddpm_step(x_k, x0_hat, k: int, schedule, noise=None):
    """One ancestral DDPM step from level k to k-1: the mean of the posterior q(x_{k-1} | x_k, x0_hat), plus its
    noise (none at k = 1, where the posterior variance is 0). `k` is one level shared by the whole batch."""
    ab, ab_prev = schedule.alphas_bar[k].to(x_k), schedule.alphas_bar[k - 1].to(x_k)
    beta = 1 - ab / ab_prev
    mean = (beta * ab_prev.sqrt() / (1 - ab)) * x0_hat + ((1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)) * x_k
    if k > 1 and noise is not None:
        mean = mean + (beta * (1 - ab_prev) / (1 - ab)).clamp(min=1e-20).sqrt() * noise
    return mean
