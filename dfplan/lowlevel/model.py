"""The low-level policy's network and loss: MLP(state, subgoal, subgoal - state) -> action (GCBC with hindsight).

Trained by the shared loop (`dfplan-train model=lowlevel train=lowlevel_cpu`) on the task's windows: from each step t
of a window, a later state of the same run, 1..k steps ahead, is the subgoal, and the action taken at t the target
(hindsight relabelling). At run time the subgoal is a planned state up to k steps ahead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dfplan.types import ModelType


@dataclass
class LowLevelConfig:
    obs_dim: int
    act_dim: int
    goal_dims: tuple = ()  # the state dims a subgoal names (e.g. effector pose, gripper, cube positions); () = all
    k: int = 10  # the subgoal lies k env steps ahead at run time; training draws 1..k steps ahead
    hidden: int = 512  # width of the hidden layers
    layers: int = 3  # hidden layers

    def __post_init__(self):
        self.goal_dims = tuple(int(d) for d in (self.goal_dims or range(self.obs_dim)))
        if self.hidden < 1 or self.layers < 1 or self.k < 1:
            raise ValueError(f"hidden, layers and k must be >= 1, got {self.hidden}, {self.layers}, {self.k}")
        bad = [d for d in self.goal_dims if not 0 <= d < self.obs_dim]
        if bad:
            raise ValueError(f"goal_dims {bad} lie outside the {self.obs_dim}-D state")


class LowLevelPolicy(nn.Module):
    def __init__(self, cfg: LowLevelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("dims", torch.tensor(cfg.goal_dims, dtype=torch.long), persistent=False)
        dims = [cfg.obs_dim + 2 * len(cfg.goal_dims)] + [cfg.hidden] * cfg.layers
        blocks = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], cfg.act_dim))

    def forward_goal(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Normalized states [..., Ds] and subgoals [..., Dg] (the goal dims, normalized like the state) ->
        normalized actions [..., Da]. The difference is given explicitly: what is left to do, not learned as a
        comparison."""
        return self.net(torch.cat([obs, goal, goal - obs[..., self.dims]], dim=-1))

    def batch_loss(self, batch, generator=None) -> torch.Tensor:
        """MSE of the action at step t given the state at t and the state 1..k steps later (within the window and
        the run); every step t with a full k steps after it in the window is a sample."""
        k = self.cfg.k
        B, L = batch.actions.shape[:2]
        if L < k:
            raise ValueError(f"windows of {L} steps are shorter than k={k}; set train.window_steps >= {k}")
        t = torch.arange(L - k + 1, device=batch.obs.device)  # start steps
        ahead = torch.randint(1, k + 1, (B, len(t)), device=batch.obs.device, generator=generator)
        goal_idx = t[None] + ahead  # [B, T]
        rows = torch.arange(B, device=batch.obs.device)[:, None]
        obs = batch.obs[:, t]  # [B, T, Ds]
        goal = batch.obs[rows, goal_idx][..., self.dims]
        valid = batch.mask[rows, goal_idx - 1]  # the subgoal is a real state of the same run
        err = F.mse_loss(self.forward_goal(obs, goal), batch.actions[:, t], reduction="none").mean(-1)
        m = valid.to(err.dtype)
        return (err * m).sum() / m.sum().clamp(min=1.0)

    def forward(self, batch) -> torch.Tensor:
        return self.batch_loss(batch)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


MODEL_TYPE = ModelType("lowlevel", LowLevelPolicy, LowLevelConfig,
                       train_hint="dfplan-train env=<task> model=lowlevel train=lowlevel_cpu")
