"""Per-dimension affine normalization of observations and actions, fitted from data."""

from __future__ import annotations

import numpy as np
import torch

LIMIT = 50.0  # |normalized value| beyond this means nothing to a network: run-time inputs are clamped to it (`clamp`)


class Normalizer:
    """x_norm = (x - shift) / scale, separately for observations and actions.

    mode="gaussian": shift = mean, scale = std (DF). mode="minmax": maps [min, max] to [-1, 1] (Diffuser).
    """

    def __init__(self, obs_shift, obs_scale, act_shift, act_scale, mode: str = "gaussian"):
        self.mode = mode
        self.obs_shift, self.obs_scale = _t(obs_shift), _t(obs_scale)
        self.act_shift, self.act_scale = _t(act_shift), _t(act_scale)

    @classmethod
    def fit(cls, obs: np.ndarray, actions: np.ndarray, mode: str = "gaussian", eps: float = 1e-4) -> "Normalizer":
        def stats(x):
            x = np.asarray(x, dtype=np.float64)
            if mode == "gaussian":
                return x.mean(0), np.maximum(x.std(0), eps)
            if mode == "minmax":
                lo, hi = x.min(0), x.max(0)
                return (hi + lo) / 2, np.maximum((hi - lo) / 2, eps)
            raise ValueError(f"normalizer mode must be 'gaussian' or 'minmax', got {mode!r}")

        return cls(*stats(obs), *stats(actions), mode=mode)

    def norm_obs(self, x):
        return (x - self.obs_shift.to(x)) / self.obs_scale.to(x)

    def denorm_obs(self, x):
        return x * self.obs_scale.to(x) + self.obs_shift.to(x)

    def norm_act(self, x):
        return (x - self.act_shift.to(x)) / self.act_scale.to(x)

    def denorm_act(self, x):
        return x * self.act_scale.to(x) + self.act_shift.to(x)

    @staticmethod
    def clamp(x: torch.Tensor) -> torch.Tensor:
        """Normalized run-time inputs clamped to +-LIMIT, so extreme observations stay finite inside the networks."""
        return x.clamp(-LIMIT, LIMIT)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "obs_shift": self.obs_shift, "obs_scale": self.obs_scale,
                "act_shift": self.act_shift, "act_scale": self.act_scale}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        return cls(state["obs_shift"], state["obs_scale"], state["act_shift"], state["act_scale"], mode=state["mode"])

    @property
    def obs_dim(self) -> int:
        return self.obs_shift.numel()

    @property
    def act_dim(self) -> int:
        return self.act_shift.numel()


def _t(x) -> torch.Tensor:
    """A float32 CPU copy (statistics may come from a checkpoint loaded onto a GPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).clone()
    return torch.as_tensor(np.asarray(x), dtype=torch.float32).clone()
