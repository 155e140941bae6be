"""Gymnasium-Robotics Fetch Push and Pick-and-Place (v4) as tasks.

The goal is part of the state the models see: the env's 25-D `observation` with the 3-D `desired_goal` appended
(28-D; `dfplan.envs.fetch.GoalInObservation`), so DF, Diffuser and BC are all goal-conditioned by their input,
and guidance steers the predicted object positions (state dims 3:6) to the goal. Score: success rate in percent,
success = the object within 0.05 m of the goal at the episode's last step (the env's `is_success`).
Objectives: `object_to_goal` (J = -sum_t ||object_t - goal||) and `reach_then_carry` (that plus the gripper's
distance to the object, weighted: the same sum, not another code path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfplan.envs import fetch as fetch_env
from dfplan.errors import check_float, check_int
from dfplan.evaluation.plots import animate_manipulation, plot_manipulation_episodes, plot_manipulation_plans
from dfplan.guidance import REACH_WEIGHT, combine, goal_distance, point_distance
from dfplan.tasks.base import NativeObservation, Task
from dfplan.types import Controller

FAMILY = "fetch"
ORDER = 1  # where its tasks stand in listings (`dfplan.tasks.FAMILIES`)
GRIP, OBJECT = (0, 1, 2), (3, 4, 5)  # state dims of the gripper and the object positions
SUCCESS_RADIUS = 0.05
PLAIN_OBS_DIM = 25  # the env's own `observation`; ours appends the 3-D goal
STEP_SCALE = 0.05  # metres of gripper motion per unit of the xyz action


class FetchTask(Task):
    family = FAMILY
    goal_modes = ("random",)
    default_goal = "random"
    success_rule = "end"
    score_name = "success %"
    success_radius = SUCCESS_RADIUS
    objectives = ("object_to_goal", "reach_then_carry")
    variants = ("default",)
    data_options = ("episodes", "noise")

    def __init__(self, name: str):
        self.name = name

    @property
    def max_episode_steps(self) -> int:
        return 50

    @property
    def goal_dims(self) -> tuple[int, ...]:
        return OBJECT

    @property
    def plan_dims(self) -> tuple[int, ...]:
        """Gripper position, object position and the two finger joints."""
        return (*GRIP, *OBJECT, 9, 10)

    def make_env(self, goal=None, max_episode_steps=None, render_mode=None):
        self.check_goal(goal)
        return fetch_env.make_fetch_env(self.name, max_episode_steps=max_episode_steps, render_mode=render_mode)

    def observation_adapter(self, goal: str | None = None):
        return GoalAppended()

    def step_success(self, obs, info) -> bool:
        return bool(info.get("is_success", False))

    # --- data --------------------------------------------------------------------------------------
    def default_dataset_id(self, **_) -> str:
        return fetch_env.default_dataset_id(self.name)

    def generate_dataset(self, dataset_id, seed, overwrite, progress, episodes: int | None = None,
                         noise: float | None = None):
        episodes = check_int("episodes", episodes or fetch_env.DEFAULT_EPISODES, 1)
        return fetch_env.generate_fetch_dataset(self.name, episodes=episodes, seed=check_int("seed", seed, 0),
                                                dataset_id=dataset_id, overwrite=overwrite,
                                                noise=check_float("noise", 0.2 if noise is None else noise, 0.0),
                                                progress=progress)

    def train_command(self, variant: str) -> str:
        return f"dfplan-train env={self.name} +experiment=fetch"

    def dataset_mismatch(self, dataset) -> str | None:
        env_id = getattr(dataset.spec.env_spec, "id", None)
        return None if env_id in (None, fetch_env.FETCH_TASKS[self.name]) else f"it was recorded in {env_id}"

    # --- guidance ----------------------------------------------------------------------------------
    def _objective(self, name):
        if name == "object_to_goal":
            return lambda goal: goal_distance(goal, OBJECT)
        return lambda goal: combine((REACH_WEIGHT, point_distance(GRIP, OBJECT)), (1.0, goal_distance(goal, OBJECT)))

    # --- scoring and pictures ------------------------------------------------------------------------
    def describe(self, s: dict) -> str:
        return (f"{self.name}, {s['episodes']} episodes: success {s['score_mean']:.1f} ± {s['score_se']:.1f} % "
                f"(object within {SUCCESS_RADIUS} m of the goal at the end), {s['episodes_per_minute']:.0f} "
                f"episodes/min")

    def plot_episodes(self, episodes, path, title="", ref_scores=None) -> Path:
        return plot_manipulation_episodes(episodes, path, title=title, grip_dims=GRIP, radius=SUCCESS_RADIUS)

    def plot_plans(self, states, goals, path, title="") -> Path:
        return plot_manipulation_plans(states, goals, path, title=title, grip_dims=GRIP, object_dims=OBJECT)

    def animate(self, states, path, goals, plans, steps, title=""):
        """The gripper's and the object's paths in metres, top and side views, with the plan being followed."""
        plans = [None if p is None else (p[:, list(GRIP)], p[:, None, list(OBJECT)]) for p in plans]
        return animate_manipulation(states[:, list(GRIP)], states[:, None, list(OBJECT)], goals[:, None, :3], plans,
                                    steps, title=title, radius=SUCCESS_RADIUS)

    def track_action(self, states, targets, planned_actions):
        """Move the gripper to the planned gripper position (the env moves it by 0.05 m per unit of action) and
        use the plan's own finger command."""
        xyz = (targets[:, list(GRIP)] - states[:, list(GRIP)]) / STEP_SCALE
        return np.concatenate([np.clip(xyz, -1.0, 1.0), planned_actions[:, 3:4]], axis=-1)

    def expert(self, lookahead: bool = False):
        return FetchExpertController(self.name)


class GoalAppended(NativeObservation):
    """A plain `gymnasium.make("FetchPush-v4")` dict observation (25-D `observation`) gets its `desired_goal`
    appended, as our env's `GoalInObservation` wrapper does (28-D); ours pass through."""

    def __call__(self, obs, goal=None):
        obs = super().__call__(obs, goal)
        if isinstance(obs, dict) and np.shape(obs.get("observation"))[-1:] == (PLAIN_OBS_DIM,):
            return {**obs, "observation": np.concatenate([obs["observation"], obs["desired_goal"]], axis=-1)}
        return obs


class FetchExpertController(Controller):
    """The scripted expert, one instance per env of a batch (they keep per-episode phase)."""

    def __init__(self, name: str):
        self.name = name
        self.experts: list = []

    def reset(self, seed=None) -> None:
        self.experts = []

    def act(self, obs):
        batched = np.ndim(obs["observation"]) == 2
        rows = {k: np.atleast_2d(v) for k, v in obs.items()}
        n = len(rows["observation"])
        while len(self.experts) < n:
            self.experts.append(fetch_env.make_expert(self.name))
        actions = np.stack([e({k: v[i] for k, v in rows.items()}) for i, e in enumerate(self.experts[:n])])
        actions = actions.astype(np.float32)
        return actions if batched else actions[0]


def named_tasks() -> dict:
    return {name: (lambda name=name: FetchTask(name)) for name in fetch_env.FETCH_TASKS}


def from_spec(spec: dict) -> FetchTask:
    return FetchTask(spec["name"])
