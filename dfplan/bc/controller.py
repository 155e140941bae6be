"""BCController: act(obs) = the policy's action for the current observation (reset / act like every controller)."""

from __future__ import annotations

import numpy as np
import torch

from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.errors import UserError
from dfplan.types import safe_actions, split_observation


class BCController:
    def __init__(self, policy, normalizer: Normalizer, device="auto", task=None, meta: dict | None = None):
        self.device = resolve_device(device)
        self.policy = policy.to(self.device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.task, self.meta = task, dict(meta or {})
        self.planner = self  # evaluation reads `controller.planner.meta` for the reference scores
        self.failures = 0

    def reset(self, seed: int | None = None) -> None:
        pass

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        states, _, batched = split_observation(obs)
        if states.shape[1] != self.policy.cfg.obs_dim:
            raise UserError(f"act() needs observations [N, {self.policy.cfg.obs_dim}], got {states.shape}")
        finite = np.isfinite(states).all(-1)
        x = torch.as_tensor(np.where(finite[:, None], states, 0.0), dtype=torch.float32, device=self.device)
        action = self.normalizer.denorm_act(self.policy.forward_obs(self.normalizer.norm_obs(x).clamp(-50, 50)))
        action = action.cpu().numpy()
        action[~finite] = 0.0
        action, bad = safe_actions(action)
        self.failures += bad + int((~finite).sum())
        return action if batched else action[0]


def load_bc(checkpoint, device="auto") -> BCController:
    from dfplan.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
    from dfplan.df.planner import checkpoint_meta, checkpoint_task
    from dfplan.models import build_model

    path = resolve_checkpoint(checkpoint, "bc")
    ckpt = load_checkpoint(path)
    if ckpt.get("model_type") != "bc":
        raise CheckpointError(f"{path} holds a {ckpt.get('model_type')!r} model, not a BC policy; train one with: "
                              f"dfplan-train model=bc train=bc_cpu")
    policy = build_model("bc", **ckpt["model_config"])
    policy.load_state_dict(ckpt["ema"])
    return BCController(policy, Normalizer.from_state_dict(ckpt["normalizer"]), device=device,
                        task=checkpoint_task(ckpt), meta=checkpoint_meta(ckpt, path))
