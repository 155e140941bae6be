"""The Diffuser baseline (Janner et al. 2022, maze2d setting): plan by inpainting, execute by tracking.

`DiffuserPlanner` samples a whole trajectory with the full DDPM reverse chain, holding the first state at the
current observation and the last at `[goal, 0, 0]` after every denoising step. `DiffuserController` executes
it the way the paper did (plan once per episode and track the planned states with a hand-written controller),
or replans periodically, or executes the plan's own diffused actions (the variant the paper reports failing).

Diffuser's trajectory holds H states s_0..s_{H-1} and H actions, action t taken at state t. As a `Plan` (step t
takes actions[t] from states[t] to states[t+1]) that is H-1 steps: states [B, H, Ds], actions [B, H-1, Da];
the last diffused action, which leads past the plan's end, is kept in `info["last_action"]`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dfplan.checkpoint import CheckpointError, load_checkpoint
from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.models import build_model
from dfplan.types import Plan, split_observation

MODES = ("plan_once", "replan", "actions")


class DiffuserPlanner:
    """Planner protocol for a trained `DiffuserModel`. obs [B, Ds], goal [B, Dg] raw units, Dg <= Ds."""

    def __init__(self, model, normalizer: Normalizer, device="auto", seed: int | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.obs_dim, self.act_dim = model.cfg.obs_dim, model.cfg.act_dim
        if (normalizer.obs_dim, normalizer.act_dim) != (self.obs_dim, self.act_dim):
            raise ValueError(f"normalizer dims (obs {normalizer.obs_dim}, act {normalizer.act_dim}) do not match the "
                             f"model's (obs {self.obs_dim}, act {self.act_dim})")
        self.generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)

    @property
    def horizon(self) -> int:
        """Trajectory length H in states; a plan covers H-1 env steps."""
        return self.model.cfg.horizon

    def _inputs(self, obs, goal) -> tuple[torch.Tensor, torch.Tensor]:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        goal = torch.as_tensor(goal, dtype=torch.float32, device=self.device)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must be [B, {self.obs_dim}], got shape {tuple(obs.shape)}")
        if goal.ndim != 2 or goal.shape[0] != obs.shape[0] or not 1 <= goal.shape[1] <= self.obs_dim:
            raise ValueError(f"goal must be [B={obs.shape[0]}, Dg] with 1 <= Dg <= {self.obs_dim} (it fills the first "
                             f"Dg state dims of the last planned state), got shape {tuple(goal.shape)}")
        if not (torch.isfinite(obs).all() and torch.isfinite(goal).all()):
            raise ValueError("obs and goal must be finite (got NaN or inf)")
        return obs, goal

    def goal_state(self, goal: torch.Tensor) -> torch.Tensor:
        """[B, Dg] goal -> [B, Ds] raw target state: the goal position with zero velocity (the rest zeros)."""
        pad = goal.new_zeros(goal.shape[0], self.obs_dim - goal.shape[1])
        return torch.cat([goal, pad], dim=1)

    @torch.no_grad()
    def plan(self, obs, goal, horizon: int | None = None, generator: torch.Generator | None = None) -> Plan:
        """obs [B, Ds], goal [B, Dg] raw -> Plan(actions [B, H-1, Da], states [B, H, Ds]) raw, H = model horizon."""
        if horizon is not None and horizon != self.horizon:
            raise ValueError(f"Diffuser plans a fixed horizon of {self.horizon} states (set when the model was trained); "
                             f"got horizon={horizon}. Pass horizon=None, or train a model with model.horizon={horizon}")
        obs, goal = self._inputs(obs, goal)
        t0 = time.perf_counter()
        nz, Da = self.normalizer, self.act_dim
        last = self.goal_state(goal)
        first_n = nz.norm_obs(obs)
        last_n = nz.norm_obs(last) if self.model.cfg.condition_last else None
        x = self.model.sample(first_n, last_n, generator=generator or self.generator)
        states = nz.denorm_obs(x[..., Da:])
        actions = nz.denorm_act(x[..., :Da])
        states[:, 0] = obs  # the conditioned states, exactly (denorm(norm(v)) is off by rounding)
        if last_n is not None:
            states[:, -1] = last
        info = {"seconds": time.perf_counter() - t0, "last_action": actions[:, -1]}
        return Plan(actions=actions[:, :-1], states=states, info=info)


def track_action(state: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Diffuser's maze2d controller: a = (target_xy - xy) + (target_v - v).

    state, target: [..., 2n] as [position (n), velocity (n)] -> action [..., n] (unclipped)."""
    state, target = np.asarray(state, dtype=np.float64), np.asarray(target, dtype=np.float64)
    n = state.shape[-1] // 2
    if state.shape[-1] != 2 * n or target.shape[-1] != state.shape[-1]:
        raise ValueError(f"state and target must be [..., 2n] (position, velocity), got {state.shape} and {target.shape}")
    return (target[..., :n] - state[..., :n]) + (target[..., n:] - state[..., n:])


def tracking_target(states: np.ndarray, t: int) -> np.ndarray:
    """The state to steer to at step t since planning: states[t+1]; past the plan, the last position at rest.

    states [N, H, Ds] -> [N, Ds]."""
    if t + 1 < states.shape[1]:
        return states[:, t + 1]
    target = states[:, -1].copy()
    target[:, states.shape[-1] // 2:] = 0.0
    return target


class DiffuserController:
    """Controller protocol around a `DiffuserPlanner`.

    mode="plan_once": plan at the first act() after reset, then track the planned states (the paper's setting).
    mode="replan": the same, replanning every `replan_every` env steps.
    mode="actions": execute the plan's own diffused actions, replanning when they run out (or every
        `replan_every` steps if given).
    All envs of a batched observation step in lockstep and are planned together.
    """

    def __init__(self, planner: DiffuserPlanner, mode: str = "plan_once", replan_every: int | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "replan" and replan_every is None:
            raise ValueError("mode='replan' needs replan_every (env steps between plans)")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        if planner.obs_dim % 2:
            raise ValueError(f"tracking needs states [position, velocity] of even size, got obs_dim {planner.obs_dim}")
        self.planner, self.mode, self.replan_every = planner, mode, replan_every
        self.failures = 0  # rows whose action was not finite (replaced by zeros)
        self.n_plans, self.plan_seconds = 0, 0.0
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan; the next act() plans anew. `seed` reseeds the planner's sampling noise."""
        self.plan: Plan | None = None
        self.states = self.actions = None  # the current plan as numpy, [N, H, Ds] / [N, H-1, Da]
        self.t = 0  # env steps since the current plan was made
        if seed is not None:
            self.planner.generator = torch.Generator(self.planner.device).manual_seed(seed)

    def _needs_plan(self, n: int) -> bool:
        if self.plan is None:
            return True
        if len(self.states) != n:
            raise ValueError(f"act() got {n} observations but the current plan is for {len(self.states)}; call reset()")
        if self.replan_every is not None and self.mode != "plan_once" and self.t >= self.replan_every:
            return True
        return self.mode == "actions" and self.t >= self.actions.shape[1]

    def _make_plan(self, state: np.ndarray, goal: np.ndarray) -> None:
        self.plan = self.planner.plan(torch.from_numpy(state), torch.from_numpy(goal))
        self.states = self.plan.states.cpu().numpy()
        self.actions = self.plan.actions.cpu().numpy()
        self.t = 0
        self.n_plans += 1
        self.plan_seconds += self.plan.info["seconds"]

    def act(self, obs) -> np.ndarray:
        """A Gymnasium dict observation (single or batched) -> action [Da] or [N, Da] in [-1, 1], always finite."""
        state, goal, batched = split_observation(obs)
        if goal is None:
            raise ValueError("Diffuser needs the goal: pass the dict observation with a 'desired_goal' entry")
        if self._needs_plan(len(state)):
            self._make_plan(state, goal)
        if self.mode == "actions":
            action = self.actions[:, self.t]
        else:
            action = track_action(state, tracking_target(self.states, self.t))
        self.t += 1
        action = self._safe(action)
        return action if batched else action[0]

    def _safe(self, action: np.ndarray) -> np.ndarray:
        """Zeros for rows with NaN/inf (counted in `failures`); clip to the action box [-1, 1]."""
        action = np.asarray(action, dtype=np.float32)
        bad = ~np.isfinite(action).all(axis=-1)
        if bad.any():
            self.failures += int(bad.sum())
            action = np.where(bad[:, None], 0.0, action).astype(np.float32)
        return np.clip(action, -1.0, 1.0)


def load_diffuser(checkpoint_path: str | Path, device="auto", seed: int | None = None) -> DiffuserPlanner:
    """A `DiffuserPlanner` with the EMA weights and the normalizer of a `dfplan-train model=diffuser` checkpoint."""
    device = resolve_device(device)
    ckpt = load_checkpoint(checkpoint_path, map_location=device)
    if ckpt.get("model_type") != "diffuser":
        raise CheckpointError(f"{checkpoint_path} holds a {ckpt.get('model_type')!r} model, not a Diffuser; "
                              f"train one with: dfplan-train model=diffuser train=diffuser_cpu")
    model = build_model(ckpt["model_type"], **ckpt["model_config"])
    model.load_state_dict(ckpt["ema"])
    return DiffuserPlanner(model, Normalizer.from_state_dict(ckpt["normalizer"]), device=device, seed=seed)
