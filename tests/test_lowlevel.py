"""The low-level policy: its hindsight loss learns to head for a subgoal k steps ahead (synthetic point dynamics),
and the loaded policy drives both controllers' tracking on plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfplan.data import Batch, Normalizer
from dfplan.errors import UserError
from dfplan.lowlevel import GoalReacher, LowLevelConfig, LowLevelPolicy


def point_windows(B: int, L: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of a 2-D point x_{t+1} = x_t + 0.1 a_t (plus a distractor dim the subgoal does not name) under
    random smooth actions in [-1, 1]: obs [B, L+1, 3], actions [B, L, 2]."""
    a = torch.tanh(torch.randn(B, 1, 2, generator=gen) + 0.3 * torch.randn(B, L, 2, generator=gen))
    x0 = torch.randn(B, 1, 2, generator=gen)
    xy = torch.cat([x0, x0 + 0.1 * a.cumsum(1)], dim=1)
    noise = torch.randn(B, L + 1, 1, generator=gen)
    return torch.cat([xy, noise], dim=-1), a


def test_hindsight_training_learns_to_head_for_the_subgoal():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    policy = LowLevelPolicy(LowLevelConfig(obs_dim=3, act_dim=2, goal_dims=(0, 1), k=5, hidden=64, layers=2))
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(300):
        obs, act = point_windows(64, 12, gen)
        loss = policy.batch_loss(Batch(obs, act, torch.ones(64, 12, dtype=torch.bool)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1  # what is left: the step-to-step noise around the mean action the subgoal implies
    identity = Normalizer(np.zeros(3), np.ones(3), np.zeros(2), np.ones(2))
    reacher = GoalReacher(policy, identity, device="cpu")
    rng = np.random.default_rng(1)
    states = rng.normal(size=(200, 3)).astype(np.float32)
    step = rng.uniform(-0.4, 0.4, size=(200, 2)).astype(np.float32)  # reachable in k=5 steps
    targets = states.copy()
    targets[:, :2] += step
    targets[:, 2] = rng.normal(size=200)  # a dim outside goal_dims: ignored
    actions = reacher.act_toward(states, targets)
    cos = (actions * step).sum(-1) / (np.linalg.norm(actions, axis=-1) * np.linalg.norm(step, axis=-1))
    assert np.mean(cos > 0.9) > 0.9


def test_the_subgoal_must_lie_inside_the_window_and_the_state():
    with pytest.raises(ValueError, match="outside"):
        LowLevelConfig(obs_dim=3, act_dim=2, goal_dims=(0, 5))
    policy = LowLevelPolicy(LowLevelConfig(obs_dim=3, act_dim=2, k=8))
    obs, act = point_windows(2, 4, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="shorter than k"):
        policy.batch_loss(Batch(obs, act, torch.ones(2, 4, dtype=torch.bool)))
    reacher = GoalReacher(policy, Normalizer(np.zeros(3), np.ones(3), np.zeros(2), np.ones(2)), device="cpu")
    with pytest.raises(UserError, match=r"\[N, 3\]"):
        reacher.act_toward(np.zeros((1, 4)), np.zeros((1, 4)))
