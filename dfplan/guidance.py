"""Guidance objectives: differentiable functions of a planned trajectory, to be maximized.

An objective maps raw (unnormalized) planned states [B, H+1, Ds] and actions [B, H, Da] to a scalar per
batch element [B]. The sampler takes its gradient w.r.t. the noisy tokens, through the RNN.
"""

from __future__ import annotations

from typing import Callable

import torch

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def goal_distance(goal: torch.Tensor, pos_dims: tuple[int, int] = (0, 1)) -> Objective:
    """The Diffusion Forcing maze objective: J = -sum_t ||pos_t - goal||_2 over all planned steps."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[:, 1:, list(pos_dims)]
        return -(pos - goal[:, None, :]).norm(dim=-1).sum(-1)

    return objective


def goal_reward(goal: torch.Tensor, radius: float = 0.45, sharpness: float = 10.0,
                pos_dims: tuple[int, int] = (0, 1)) -> Objective:
    """A dense, smooth stand-in for the sparse maze reward: sum_t sigmoid(sharpness * (radius - dist_t))."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        dist = (states[:, 1:, list(pos_dims)] - goal[:, None, :]).norm(dim=-1)
        return torch.sigmoid(sharpness * (radius - dist)).sum(-1)

    return objective


def combine(*weighted: tuple[float, Objective]) -> Objective:
    """Weighted sum of objectives, e.g. combine((1.0, goal_distance(g)), (5.0, goal_reward(g)))."""

    def objective(states, actions):
        return sum(w * f(states, actions) for w, f in weighted)

    return objective
