"""Shared data types. Shapes: B = batch, H = planned env steps, Ds / Da / Dg = state / action / goal dims."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class Plan:
    """A plan in env steps and raw (unnormalized) units."""

    actions: torch.Tensor  # [B, H, Da]
    states: torch.Tensor  # [B, H + 1, Ds]; states[:, 0] is the observation the plan started from
    info: dict = field(default_factory=dict)  # e.g. "objective" [B], "seconds"

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]


@runtime_checkable
class Planner(Protocol):
    obs_dim: int
    act_dim: int
    device: torch.device

    def plan(self, obs: torch.Tensor, goal: torch.Tensor, horizon: int | None = None) -> Plan:
        """obs [B, Ds], goal [B, Dg] (raw units) -> Plan."""


@runtime_checkable
class Controller(Protocol):
    """The whole contract a control loop needs: numpy in, numpy out."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs) -> np.ndarray:
        """A Gymnasium observation (dict with "observation" and "desired_goal", single or batched) -> action(s)."""


def split_observation(obs) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(states [N, Ds], goals [N, Dg] or None, batched?) from a dict or flat observation, single or batched."""
    if isinstance(obs, dict):
        if "observation" not in obs:
            raise ValueError(f"dict observations need an 'observation' key, got {sorted(obs)}")
        state, goal = np.asarray(obs["observation"], dtype=np.float32), obs.get("desired_goal")
        goal = None if goal is None else np.asarray(goal, dtype=np.float32)
    else:
        state, goal = np.asarray(obs, dtype=np.float32), None
    batched = state.ndim == 2
    if state.ndim not in (1, 2):
        raise ValueError(f"observation must be [Ds] or [N, Ds], got shape {state.shape}")
    state = state.reshape(-1, state.shape[-1])
    if goal is not None:
        if goal.ndim not in (1, 2):
            raise ValueError(f"desired_goal must be [Dg] or [N, Dg], got shape {goal.shape}")
        goal = goal.reshape(-1, goal.shape[-1])
        if len(goal) != len(state):
            raise ValueError(f"{len(state)} observations but {len(goal)} goals")
    return state, goal, batched


def safe_actions(action, low: float = -1.0, high: float = 1.0) -> tuple[np.ndarray, int]:
    """(actions [N, Da] with non-finite rows replaced by zeros and everything clipped to [low, high], number of
    rows replaced). Every controller ends with this: it never emits NaN or out-of-range actions."""
    action = np.asarray(action, dtype=np.float32)
    bad = ~np.isfinite(action).all(axis=-1)
    if bad.any():
        action = np.where(bad[..., None], 0.0, action).astype(np.float32)
    return np.clip(action, low, high), int(bad.sum())


def check_batch(name: str, x, dim: int, device=None, rows: int | None = None) -> torch.Tensor:
    """`x` as a float32 tensor [B, dim] on `device`: a UserError for another shape, a ValueError for NaN/inf."""
    from dfplan.errors import UserError

    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0 or (rows is not None and x.shape[0] != rows):
        want = f"[{rows if rows is not None else 'B'}, {dim}]" + (" with B >= 1" if rows is None else "")
        raise UserError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values: {x[~torch.isfinite(x).all(-1)][:3].tolist()}")
    return x
