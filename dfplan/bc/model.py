"""A goal-conditioned behaviour-cloning policy: MLP(normalized observation) -> normalized action.

Goal-conditioned when the task puts the goal in the observation (Fetch does); trained by the shared loop
(`dfplan-train model=bc train=bc_cpu`) on the same windows as DF, every real step of a window a sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfplan.types import ModelType


@dataclass
class BCConfig:
    obs_dim: int
    act_dim: int
    hidden: int = 256  # width of the hidden layers
    layers: int = 3  # hidden layers

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {self.hidden} and {self.layers}")


class BCPolicy(nn.Module):
    def __init__(self, cfg: BCConfig):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.obs_dim] + [cfg.hidden] * cfg.layers
        blocks = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], cfg.act_dim))

    def forward_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized observations [..., Ds] -> normalized actions [..., Da]."""
        return self.net(obs)

    def batch_loss(self, batch, generator=None) -> torch.Tensor:
        """MSE on every real step of the windows: action t from observation t."""
        pred = self.net(batch.obs[:, :-1])
        err = F.mse_loss(pred, batch.actions, reduction="none").mean(-1)
        m = batch.mask.to(err.dtype)
        return (err * m).sum() / m.sum().clamp(min=1.0)

    def forward(self, batch) -> torch.Tensor:
        return self.batch_loss(batch)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


MODEL_TYPE = ModelType("bc", BCPolicy, BCConfig, train_hint="dfplan-train model=bc train=bc_cpu")
