"""The Diffuser baseline (Janner et al. 2022, maze2d setting): plan by inpainting (its controller lives in
`dfplan.diffuser.controller`).

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

import torch

from dfplan.checkpoint import load_model
from dfplan.data import Normalizer
from dfplan.devices import resolve_device
from dfplan.diffuser.model import MODEL_TYPE
from dfplan.errors import UserError, check_choice, check_float, check_int
from dfplan.settings import EXECUTIONS
from dfplan.types import Plan, whole_states

MODES = ("plan_once", "replan", "actions")  # how `DiffuserController` executes plans

# what a checkpoint's stored execution holds
EXECUTION_KEYS = ("mode", "replan_every", "execution", "snap_radius", "grasp_align")


class DiffuserPlanner:
    """Planner protocol for a trained `DiffuserModel`. obs [B, Ds], goal [B, Dg] raw units, Dg <= Ds.

    A model trained on part of the state (`state_dims`, e.g. the effector, the cubes and the subgoal offsets) takes
    and returns whole observations all the same: planned states hold the current value on the dims it does not plan.
    """

    def __init__(self, model, normalizer: Normalizer, device="auto", seed: int | None = None, task=None,
                 meta: dict | None = None, state_dims: tuple[int, ...] | None = None, env_obs_dim: int | None = None,
                 execution: dict | None = None):
        """execution: how the checkpoint was tuned to be executed (`planner=diffuser`'s default, see
        `dfplan.controllers.make_controller`): {"mode": "replan", "replan_every": 4, "execution": "lowlevel"};
        None = the paper's (plan once, track the planned states)."""
        self.device = resolve_device(device)
        self.task, self.meta = task, dict(meta or {})
        self.execution = check_execution(execution, self.meta.get("path", "the checkpoint")) if execution else None
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.act_dim = model.cfg.act_dim
        if (normalizer.obs_dim, normalizer.act_dim) != (model.cfg.obs_dim, self.act_dim):
            raise ValueError(f"normalizer dims (obs {normalizer.obs_dim}, act {normalizer.act_dim}) do not match the "
                             f"model's (obs {model.cfg.obs_dim}, act {self.act_dim})")
        self.state_dims = None if state_dims is None else tuple(int(d) for d in state_dims)
        if self.state_dims is not None and model.cfg.condition_last:
            raise ValueError("a Diffuser over part of the state (state_dims) takes its goal from the state; it cannot "
                             "inpaint a last state (condition_last)")
        if self.state_dims is not None and env_obs_dim is None:
            raise ValueError("a Diffuser over part of the state (state_dims) needs env_obs_dim, the size of the "
                             "observations it is given")
        self.obs_dim = model.cfg.obs_dim if self.state_dims is None else int(env_obs_dim)  # what callers pass
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
            raise ValueError(f"Diffuser plans a fixed horizon of {self.horizon} states (set when the model was "
                             f"trained); got horizon={horizon}. Pass horizon=None, or train a model with "
                             f"model.horizon={horizon}")
        obs, goal = self._inputs(obs, goal)
        t0 = time.perf_counter()
        nz, Da = self.normalizer, self.act_dim
        first_n = nz.norm_obs(obs if self.state_dims is None else obs[:, list(self.state_dims)])
        last = self.goal_state(goal) if self.model.cfg.condition_last else None
        last_n = nz.norm_obs(last) if last is not None else None
        x = self.model.sample(first_n, last_n, generator=generator or self.generator)
        planned = nz.denorm_obs(x[..., Da:])
        actions = nz.denorm_act(x[..., :Da])
        states = whole_states(planned, obs, self.state_dims)
        states[:, 0] = obs  # the conditioned states, exactly (denorm(norm(v)) is off by rounding)
        if last is not None:
            states[:, -1] = last
        info = {"seconds": time.perf_counter() - t0, "last_action": actions[:, -1]}
        return Plan(actions=actions[:, :-1], states=states, info=info)


def check_execution(execution: dict, source) -> dict:
    """A stored execution (`DiffuserPlanner`'s `execution`) checked key by key; a bad one is a one-line UserError
    that names `source` (the checkpoint)."""
    try:
        if not isinstance(execution, dict) or not set(execution) <= set(EXECUTION_KEYS) or "mode" not in execution:
            raise UserError(f"it must be a mapping with 'mode' and some of {list(EXECUTION_KEYS)}, got {execution!r}")
        check_choice("mode", execution["mode"], MODES)
        if execution.get("replan_every") is not None:
            check_int("replan_every", execution["replan_every"], 1)
        if execution.get("execution") is not None:
            check_choice("execution", execution["execution"], EXECUTIONS)
        for key in ("snap_radius", "grasp_align"):
            if execution.get(key) is not None:
                check_float(key, execution[key], 0.0)
    except UserError as err:
        raise UserError(f"{source} stores a bad Diffuser execution: {err}") from None
    return dict(execution)


def load_diffuser(checkpoint_path: str | Path, device="auto", seed: int | None = None) -> DiffuserPlanner:
    """A `DiffuserPlanner` with the EMA weights and the normalizer of a `dfplan-train model=diffuser` checkpoint."""
    loaded = load_model(checkpoint_path, MODEL_TYPE)
    return DiffuserPlanner(loaded.model, loaded.normalizer, device=resolve_device(device), seed=seed,
                           task=loaded.task, meta=loaded.meta, state_dims=loaded.checkpoint.get("state_dims"),
                           env_obs_dim=loaded.checkpoint.get("env_obs_dim"),
                           execution=loaded.checkpoint.get("execution"))
