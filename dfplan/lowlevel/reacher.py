"""GoalReacher: the trained low-level policy at run time, raw env units in and out."""

from __future__ import annotations

import numpy as np
import torch

from dfplan.checkpoint import load_model
from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.errors import UserError
from dfplan.lowlevel.model import MODEL_TYPE, LowLevelPolicy


class GoalReacher:
    """`act_toward(states, targets)`: the action that heads from each state toward its target state (only the
    policy's goal dims of the target are read). `k`: how many env steps ahead the target should lie."""

    def __init__(self, policy: LowLevelPolicy, normalizer: Normalizer, device="auto", task=None,
                 meta: dict | None = None):
        self.device = resolve_device(device)
        self.policy = policy.to(self.device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.task, self.meta = task, dict(meta or {})
        self.obs_dim, self.k = policy.cfg.obs_dim, policy.cfg.k
        self.goal_dims = policy.cfg.goal_dims

    def check_reads(self, obs_dim: int, planner: str) -> None:
        """A UserError unless the policy reads the `obs_dim`-D states `planner` plans."""
        if obs_dim != self.obs_dim:
            raise UserError(f"the low-level policy {self.meta.get('path', '')} reads {self.obs_dim}-D states, the "
                            f"{planner} plans {obs_dim}-D ones: train it on the planner's data")

    @torch.no_grad()
    def act_toward(self, states: np.ndarray, targets: np.ndarray, planned_actions=None) -> np.ndarray:
        """states, targets [N, Ds] raw -> actions [N, Da] raw (not yet clipped to the action box).
        `planned_actions` is ignored: it is there so the reacher fits where a tracking controller does."""
        states, targets = np.asarray(states, dtype=np.float32), np.asarray(targets, dtype=np.float32)
        if states.ndim != 2 or states.shape[1] != self.obs_dim or targets.shape != states.shape:
            raise UserError(f"the low-level policy needs states and targets [N, {self.obs_dim}], got {states.shape} "
                            f"and {targets.shape}")
        nz = self.normalizer
        x = nz.clamp(nz.norm_obs(torch.as_tensor(states, device=self.device)))
        g = nz.clamp(nz.norm_obs(torch.as_tensor(targets, device=self.device)))
        action = nz.denorm_act(self.policy.forward_goal(x, g[:, list(self.goal_dims)]))
        return action.cpu().numpy()


def load_lowlevel(checkpoint, device="auto") -> GoalReacher:
    """A `GoalReacher` from a `dfplan-train model=lowlevel` checkpoint (a path or a shipped name)."""
    loaded = load_model(checkpoint, MODEL_TYPE)
    return GoalReacher(loaded.model, loaded.normalizer, device=device, task=loaded.task, meta=loaded.meta)
