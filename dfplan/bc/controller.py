"""BCController: act(obs) = the policy's action for the current observation (reset / act like every controller)."""

from __future__ import annotations

import numpy as np
import torch

from dfplan.bc.model import MODEL_TYPE
from dfplan.checkpoint import load_model
from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.errors import UserError
from dfplan.tasks.base import NativeObservation
from dfplan.types import Controller, safe_actions, split_observation


class BCController(Controller):
    """The behaviour-cloning policy as a controller (`dfplan.types.Controller`): it acts at every step, plans
    nothing."""

    def __init__(self, policy, normalizer: Normalizer, device="auto", task=None, meta: dict | None = None):
        self.device = resolve_device(device)
        self.policy = policy.to(self.device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.task, self.meta = task, dict(meta or {})
        self.failures = 0
        self.adapter = task.observation_adapter() if task is not None else NativeObservation()

    def reset(self, seed: int | None = None) -> None:
        self.adapter.reset()

    @torch.no_grad()
    def act(self, obs, goal=None) -> np.ndarray:
        """The env's dict observation (ours or the env's own, see `Task.observation_adapter`) -> action(s)."""
        states, _, batched = split_observation(self.adapter(obs, goal))
        if states.shape[1] != self.policy.cfg.obs_dim:
            raise UserError(f"act() needs observations [N, {self.policy.cfg.obs_dim}], got {states.shape}")
        finite = np.isfinite(states).all(-1)
        x = torch.as_tensor(np.where(finite[:, None], states, 0.0), dtype=torch.float32, device=self.device)
        action = self.normalizer.denorm_act(self.policy.forward_obs(self.normalizer.clamp(self.normalizer.norm_obs(x))))
        action = action.cpu().numpy()
        action[~finite] = 0.0
        action, bad = safe_actions(action)
        self.failures += bad + int((~finite).sum())
        return action if batched else action[0]


def load_bc(checkpoint, device="auto") -> BCController:
    loaded = load_model(checkpoint, MODEL_TYPE)
    return BCController(loaded.model, loaded.normalizer, device=device, task=loaded.task, meta=loaded.meta)
