"""Shared data types. Shapes: B = batch, H = planned env steps, Ds / Da / Dg = state / action / goal dims."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from dfplan.errors import UserError


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


class Controller:
    """The controller contract. A control loop needs only `reset(seed)` and `act(obs) -> action` (numpy in, numpy
    out: a Gymnasium observation, a dict with "observation" and "desired_goal", single or batched). Evaluation and
    the benchmarks read the rest, which every dfplan controller has (the defaults here: no checkpoint, no planning):

    - `failures`: how many actions were replaced by a fallback so far (a non-finite observation or action, a failed
      plan); evaluation reports the count, so a fallback is never a silent score drop.
    - `plan_seconds`: time spent planning so far.
    - `meta`: what the controller's checkpoint says of itself ("path", "env" it was trained for, "ref_scores",
      "dataset_id", "step"); empty without a checkpoint.
    - `history`: the plans made since `reset` (planned states [N, H+1, Ds], numpy), for pictures.
    - `max_episode_steps`: the episode's time limit, set by evaluation before `reset` (a planner may plan no further).
    - `goal`: the goal mode the controller reads (`Task.goal_modes`; a DF checkpoint stores its own); evaluation runs
      it when no goal is asked for; None = the task's default.
    - `settings_record()`: the settings it runs with, as a results row stores them.

    A plain object with `reset` and `act` (a user's own controller, a scripted expert) gets these defaults through
    `as_controller`.
    """

    failures: int = 0
    plan_seconds: float = 0.0
    meta = MappingProxyType({})
    history: tuple | list = ()
    max_episode_steps: int | None = None
    goal: str | None = None

    @property
    def checkpoint_path(self) -> str | None:
        return self.meta.get("path")

    def reset(self, seed: int | None = None) -> None:
        raise NotImplementedError

    def act(self, obs) -> np.ndarray:
        """A Gymnasium observation (dict with "observation" and "desired_goal", single or batched) -> action(s)."""
        raise NotImplementedError

    def settings_record(self) -> dict:
        return {}


class PlainController(Controller):
    """Any object with `reset(seed)` and `act(obs)`, with the contract's defaults for the rest."""

    def __init__(self, inner):
        self.inner = inner

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed=seed)

    def act(self, obs) -> np.ndarray:
        return self.inner.act(obs)


def as_controller(controller) -> Controller:
    """`controller` itself when it keeps the whole contract (a `Controller`), else it wrapped with the defaults."""
    return controller if isinstance(controller, Controller) else PlainController(controller)


@dataclass(frozen=True)
class ModelType:
    """A model type as checkpoints name it ("df_rnn", "diffuser", "bc", "lowlevel"): its network class, its config
    dataclass and the command that trains one (named when a checkpoint holds another type)."""

    name: str
    model_cls: type
    config_cls: type
    train_hint: str

    def complete_config(self, config: dict) -> dict:
        """A stored model config in today's form: renamed fields renamed, fields added since filled with their
        defaults (what the model was built with before they existed)."""
        config = dict(config)
        if "objective" in config:  # checkpoints written before the field was named `prediction`
            config["prediction"] = config.pop("objective")
        fields = self.config_cls.__dataclass_fields__
        defaults = {k: f.default for k, f in fields.items() if f.default is not dataclasses.MISSING}
        defaults |= {k: f.default_factory() for k, f in fields.items() if f.default_factory is not dataclasses.MISSING}
        return {**defaults, **config}

    def build(self, **config):
        """The network from plain keyword config (as stored in checkpoints)."""
        config = self.complete_config(config)
        fields = set(self.config_cls.__dataclass_fields__)
        unknown = set(config) - fields
        if unknown:
            raise ValueError(f"unknown {self.name} config keys {sorted(unknown)}; valid keys: {sorted(fields)}")
        return self.model_cls(self.config_cls(**config))


@dataclass
class EpisodeResult:
    """One evaluated episode, in the env's own units."""

    seed: int
    ret: float  # sum of the env's rewards
    success: bool  # by the task's rule (`Task.success_rule`)
    time_to_goal: int | None  # first step at which the env reported success
    path: np.ndarray  # achieved goal over time [T+1, Dg] (maze: the point's xy; manipulation: the object)
    goal: np.ndarray  # [Dg]
    plans: list = field(default_factory=list)  # planned states [H+1, Ds] made along the way (for pictures)
    states: np.ndarray | None = None  # full observations [T+1, Ds] (kept for pictures of the first episodes)
    success_at_end: bool = False  # the env's success flag at the episode's last step


def standard_error(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


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


def snap_to_goal(target: np.ndarray, goals: np.ndarray, goal_dims, objects: int, radius: float | None,
                 current: np.ndarray | None = None) -> np.ndarray:
    """Targets [N, Ds] with each goal object's position replaced by its goal where it lies within `radius` of it,
    in the target or, given the current states [N, Ds], where the object already is (a plan that passes the goal and
    turns away from it does not lead the object off it again).

    The goal [N, Dg] holds the state dims `goal_dims`, split evenly into `objects` objects' positions (a maze's
    point, Fetch's block, each cube); `radius` None = off (the targets unchanged)."""
    if radius is None:
        return target
    target = np.array(target, copy=True)
    for part in np.array_split(np.arange(len(goal_dims)), objects):
        dims = [goal_dims[i] for i in part]
        near = np.linalg.norm(target[:, dims] - goals[:, part], axis=-1) <= radius
        if current is not None:
            near |= np.linalg.norm(current[:, dims] - goals[:, part], axis=-1) <= radius
        target[np.ix_(near, dims)] = goals[near][:, part]
    return target


def whole_states(planned: torch.Tensor, obs: torch.Tensor, state_dims) -> torch.Tensor:
    """States planned over some dims [B, T, D_plan] as whole observations [B, T, Ds]: the dims not planned hold their
    value in `obs` [B, Ds]; `state_dims` None = the plan is already whole."""
    if state_dims is None:
        return planned
    whole = obs[:, None].expand(-1, planned.shape[1], -1).clone()
    whole[..., list(state_dims)] = planned
    return whole


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
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0 or (rows is not None and x.shape[0] != rows):
        want = f"[{rows if rows is not None else 'B'}, {dim}]" + (" with B >= 1" if rows is None else "")
        raise UserError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values: {x[~torch.isfinite(x).all(-1)][:3].tolist()}")
    return x
