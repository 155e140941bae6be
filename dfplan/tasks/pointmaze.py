"""PointMaze (Gymnasium-Robotics PointMaze-v3): the named D4RL mazes and users' own maps, as tasks.

Score: D4RL-style normalized return (100 = the waypoint expert, 0 = a random policy, the reference scores coming
from the dataset the checkpoint was trained on). Success: the goal reached at any step (continuing task).
Objectives: `goal_distance` (the Diffusion Forcing paper's straight line) and `geodesic` (shortest path around the
walls; uses the map). Variants of the shipped DF checkpoints: `dwell` (trained on the dwell data, the default),
`d4rl` (the D4RL recipe) and `paper` (the D4RL recipe, the Diffusion Forcing paper code's configuration).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from dfplan.data import load_minari
from dfplan.envs import MAZES, MazeLayout, WaypointExpert, custom_maze, make_env, recipes
from dfplan.envs.maze import G
from dfplan.errors import UserError, check_int
from dfplan.evaluation.plots import animate_maze, plot_maze_episodes, plot_maze_plans
from dfplan.guidance import GeodesicGuide, episode_goal_distance, goal_distance
from dfplan.tasks.base import Task, reach_value
from dfplan.types import Controller, EpisodeResult, split_observation, standard_error

FAMILY = "pointmaze"
ORDER = 0  # where its tasks stand in listings (`dfplan.tasks.FAMILIES`)
GOAL_RADIUS = 0.45  # PointMaze-v3 pays reward (and reports success) within this distance of the goal
MAX_STEP = 0.5  # metres: a planned step longer than this jumps (the point moves <= 0.075 m per env step; unguided plans
#   of the shipped models stay below 0.4 m, strongly guided ones jump across walls)


def track_action(state: np.ndarray, target: np.ndarray, planned_action: np.ndarray | None = None) -> np.ndarray:
    """Diffuser's maze2d controller: a = (target_xy - xy) + (target_v - v).

    state, target: [..., 2n] as [position (n), velocity (n)] -> action [..., n] (unclipped)."""
    state, target = np.asarray(state, dtype=np.float64), np.asarray(target, dtype=np.float64)
    n = state.shape[-1] // 2
    if state.shape[-1] != 2 * n or target.shape[-1] != state.shape[-1]:
        raise ValueError(f"state and target must be [..., 2n] (position, velocity), got {state.shape} and "
                         f"{target.shape}")
    return (target[..., :n] - state[..., :n]) + (target[..., n:] - state[..., n:])


class PointMazeTask(Task):
    family = FAMILY
    goal_modes = ("fixed", "random")
    success_rule = "any"
    score_name = "normalized score"
    success_radius = GOAL_RADIUS
    objectives = ("goal_distance", "geodesic", "episode_goal_distance")
    variants = ("dwell", "d4rl", "paper")  # paper: +experiment=df_paper
    data_options = ("steps", "dwell", "ref_episodes")

    def __init__(self, spec):
        self.maze = spec  # dfplan.envs.MazeSpec
        self.name = spec.name

    @property
    def max_episode_steps(self) -> int:
        return self.maze.max_episode_steps

    @property
    def goal_dims(self) -> tuple[int, ...]:
        return (0, 1)

    @cached_property
    def layout(self):
        return MazeLayout(self.maze.maze_map)

    def make_env(self, goal=None, max_episode_steps=None, render_mode=None):
        return make_env(self.maze, goal=self.check_goal(goal), max_episode_steps=max_episode_steps,
                        render_mode=render_mode)

    # --- data --------------------------------------------------------------------------------------
    def default_dataset_id(self, dwell: int = 0, **_) -> str:
        return recipes.default_dataset_id(self.name, check_int("dwell", dwell, 0))

    def generate_dataset(self, dataset_id, seed, overwrite, progress, steps: int = 1_000_000, dwell: int = 0,
                         ref_episodes: int = 100):
        return recipes.generate_pointmaze_dataset(self.maze, steps=check_int("steps", steps, 1),
                                                  seed=check_int("seed", seed, 0), dataset_id=dataset_id,
                                                  overwrite=overwrite,
                                                  ref_episodes=check_int("ref_episodes", ref_episodes, 1),
                                                  dwell=check_int("dwell", dwell, 0), progress=progress)

    def train_command(self, variant: str) -> str:
        d4rl = self.default_dataset_id()
        if variant == "paper":  # whole-episode windows, as the paper trains; its Large network is twice as wide
            wide = " model.mlp_hidden=32 model.emb_dim=32" if self.max_episode_steps >= 800 else ""
            return (f"dfplan-train env={self.name} dataset={d4rl} +experiment=df_paper "
                    f"train.window_steps={self.max_episode_steps}{wide}")
        dataset = self.default_dataset_id(dwell=100) if variant == "dwell" else d4rl
        return f"dfplan-train env={self.name} dataset={dataset}"

    def dataset_mismatch(self, dataset) -> str | None:
        kwargs = json.loads(dataset.storage.metadata.get("eval_env_spec") or "{}").get("kwargs") or {}
        if "maze_map" not in kwargs:
            return None  # not one of ours: nothing to compare
        plain = [[0 if c == "g" else c for c in r] for r in kwargs["maze_map"]]
        if plain != [list(r) for r in self.maze.maze_map]:
            return f"its maze is not {self.name}'s"
        return None

    # --- guidance ----------------------------------------------------------------------------------
    def _objective(self, name):
        if name == "geodesic":
            return GeodesicGuide(self.layout)
        if name == "episode_goal_distance":
            return lambda goal: episode_goal_distance(goal, self.max_episode_steps, self.goal_dims)
        return lambda goal: goal_distance(goal, self.goal_dims)

    def plan_value(self, states, goal, frame_stack=1):
        """MCTD's maze value (`reach_value`): 0 for any step longer than MAX_STEP (set on these models' plans, every
        step tested), else how soon (or how near) the planned xy reaches the goal. Uses no map."""
        return reach_value(states[..., list(self.goal_dims)], goal, GOAL_RADIUS, MAX_STEP)

    # --- scoring and pictures ------------------------------------------------------------------------
    def summarize(self, episodes: list[EpisodeResult], ref_scores=None) -> dict:
        ref_min, ref_max = (ref_scores or (None, None))[:2]
        if ref_min is None or ref_max is None:  # no reference scores: fall back to the success rate
            return super().summarize(episodes)
        norm = self.normalized(episodes, ref_min, ref_max)
        se = standard_error(norm)
        return {"score_name": self.score_name, "score_mean": float(norm.mean()), "score_se": se,
                "normalized_score_mean": float(norm.mean()), "normalized_score_se": se,
                "ref_scores": [float(ref_min), float(ref_max)]}

    @staticmethod
    def normalized(episodes, ref_min: float, ref_max: float) -> np.ndarray:
        return 100.0 * (np.array([e.ret for e in episodes]) - ref_min) / (ref_max - ref_min)

    def describe(self, s: dict) -> str:
        ttg = "never reached" if s["mean_time_to_goal"] is None else f"time to goal {s['mean_time_to_goal']:.0f} steps"
        score = (f"normalized score {s['score_mean']:.1f} ± {s['score_se']:.1f} (100 = waypoint expert)"
                 if s["score_name"] == self.score_name else "no reference scores")
        return (f"{self.name} ({s['goal']} goal), {s['episodes']} episodes: {score}, success {s['success_rate']:.0%}, "
                f"{ttg}, {s['episodes_per_minute']:.0f} episodes/min")

    def plot_episodes(self, episodes, path, title="", ref_scores=None) -> Path:
        labels = None
        if ref_scores and None not in ref_scores[:2]:
            labels = [f"score {s:.0f}" for s in self.normalized(episodes, *ref_scores[:2])]
        return plot_maze_episodes(self.layout, episodes, path, title=title, labels=labels, radius=GOAL_RADIUS)

    def plot_plans(self, states, goals, path, title="") -> Path:
        return plot_maze_plans(self.layout, states, goals, path, title=title, radius=GOAL_RADIUS)

    def animate(self, states, path, goals, plans, steps, title=""):
        """Top-down over the maze: the point's path, the plan being followed, the goal."""
        plans = [None if p is None else p[:, :2] for p in plans]
        return animate_maze(self.layout, path, goals, plans, steps, title=title, radius=GOAL_RADIUS)

    def plan_stats(self, states, goals) -> dict:
        in_wall = self.layout.in_wall(states[..., :2])  # [B, H+1]
        return {**super().plan_stats(states, goals), "in_wall": float(in_wall.mean()),
                "through_wall": float(in_wall.any(axis=1).mean())}

    def track_action(self, states, targets, planned_actions):
        """Diffuser's maze2d tracker on [position, velocity] states."""
        return track_action(states, targets)

    def rest_state(self, states):
        """The last planned position with zero velocity."""
        out = np.array(states, copy=True)
        out[:, 2:] = 0.0
        return out

    def expert(self, lookahead: bool = False):
        return MazeExpertController(self.layout, lookahead)

    # --- provenance --------------------------------------------------------------------------------
    def spec(self) -> dict:
        m = self.maze
        return {"family": FAMILY, "name": m.name, "maze_map": [list(r) for r in m.maze_map],
                "eval_goal_cell": list(m.eval_goal_cell), "max_episode_steps": int(m.max_episode_steps)}


class MazeExpertController(Controller):
    """The waypoint expert (or the faster look-ahead oracle) as a controller: reset / act(dict obs)."""

    def __init__(self, layout, lookahead: bool = False):
        self.expert = WaypointExpert(layout, lookahead=lookahead)

    def reset(self, seed=None) -> None:
        pass

    def act(self, obs):
        states, goals, batched = split_observation(obs)
        actions = np.stack([self.expert({"observation": s, "desired_goal": g}) for s, g in zip(states, goals)])
        actions = actions.astype(np.float32)
        return actions if batched else actions[0]


# --- the family: named mazes, custom maps ------------------------------------------------------------
def named_tasks() -> dict:
    return {name: (lambda spec=spec: PointMazeTask(spec)) for name, spec in MAZES.items()}


def from_spec(spec: dict) -> PointMazeTask:
    return PointMazeTask(custom_maze(spec["maze_map"], goal_cell=spec.get("eval_goal_cell"),
                                     max_episode_steps=spec.get("max_episode_steps"), name=spec["name"]))


def custom_task(name: str, maze_map, goal_cell=None, max_episode_steps=None) -> PointMazeTask:
    """A task for a user's own map (validated: rows of 0/1, walls all round, >= 2 connected free cells)."""
    return PointMazeTask(custom_maze(maze_map, goal_cell=goal_cell, max_episode_steps=max_episode_steps, name=name))


def from_dataset(name: str, dataset_id: str | None) -> PointMazeTask | None:
    """The custom maze `name` recovered from its dataset (the eval env spec holds the map, goal marked "g")."""
    dataset_id = dataset_id or recipes.default_dataset_id(name)
    if not recipes.dataset_exists(dataset_id):
        return None
    spec = json.loads(load_minari(dataset_id).storage.metadata.get("eval_env_spec") or "{}")
    kwargs = spec.get("kwargs") or {}
    if "maze_map" not in kwargs:
        return None
    rows = [list(r) for r in kwargs["maze_map"]]
    goal = next(((i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == G), None)
    plain = [[0 if c == G else c for c in r] for r in rows]
    if goal is None:
        raise UserError(f"dataset {dataset_id!r} has no evaluation goal cell in its eval env's maze_map")
    return custom_task(name, plain, goal_cell=goal, max_episode_steps=spec.get("max_episode_steps"))
