"""OGBench PointMaze navigate (medium, large, giant) as tasks (`dfplan.envs.ogbench_maze` holds the env and recipe).

The state the models see is OGBench's own observation, the point's xy (the point is kinematic, so xy is its whole
state), and in the `-goal` tasks the goal's xy after it; `desired_goal` is the goal's xy. Score: success rate in
percent, success = the point came within 1.0 of the goal at any step of the 1,000 (OGBench's rule; the episode runs
on). Env seed `s` plays evaluation task `1 + s % 5`.
Guidance knows no map: `goal_distance` is the straight line to the goal. Plans are executed with the model's own
actions or tracked by the point's position controller (`execution=track`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from dfplan.envs import MazeLayout
from dfplan.envs import ogbench_maze as nav
from dfplan.envs.ogbench import NUM_TASKS, task_id_of
from dfplan.evaluation.plots import animate_maze, plot_maze_episodes, plot_maze_plans
from dfplan.guidance import goal_distance
from dfplan.tasks.base import Task, reach_value, success_by_task
from dfplan.tasks.ogbench import OGBenchData
from dfplan.types import EpisodeResult

FAMILY = "ogbench_maze"
ORDER = 3  # where its tasks stand in listings (`dfplan.tasks.FAMILIES`)
MAX_PLAN_STEP = 1.0  # a planned step longer than this jumps: the point moves at most 0.28 per env step


class NavigateTask(OGBenchData, Task):
    family = FAMILY
    goal_modes = ("fixed",)  # OGBench's five evaluation tasks, chosen by the env seed
    default_goal = "fixed"
    success_rule = "any"
    score_name = "success %"
    objectives = ("goal_distance",)
    variants = ("default",)
    data_options = ("episodes", "noise", "workers", "npz")
    default_noise = nav.DATA_NOISE

    def __init__(self, name: str):
        self.name = name
        self.success_radius = nav.SUCCESS_DISTANCE

    @property
    def max_episode_steps(self) -> int:
        return nav.EPISODE_STEPS

    @property
    def goal_dims(self) -> tuple[int, ...]:
        return (0, 1)

    @property
    def plan_dims(self) -> tuple[int, ...]:
        return (0, 1)

    def observation_adapter(self, goal: str | None = None):
        """Reads a plain OGBench navigate env's xy and `info["goal"]` (`dfplan.envs.ogbench_maze.PlainObservation`)."""
        return nav.PlainObservation(with_goal=nav.goal_in_state(self.name))

    def make_env(self, goal=None, max_episode_steps=None, render_mode=None):
        self.check_goal(goal)
        return nav.make_navigate_env(self.name, max_episode_steps=max_episode_steps, render_mode=render_mode)

    @cached_property
    def layout(self):
        """The maze for pictures and plan statistics, its rows flipped so that its frame is OGBench's xy shifted by
        `_shift` (MazeLayout's y grows upward with decreasing row)."""
        env = nav.make_raw_env(self.name)
        maze_map = np.asarray(env.unwrapped.maze_map)
        env.close()
        return MazeLayout(maze_map[::-1].tolist(), scale=nav.MAZE_UNIT)

    @property
    def _shift(self) -> np.ndarray:
        """OGBench xy + _shift = the layout's xy (OGBench puts cell (i, j) at (4 j - 4, 4 i - 4))."""
        lay = self.layout
        return np.array([lay.scale * 1.5 - lay.x_center, lay.scale * 1.5 - lay.y_center])

    # --- data --------------------------------------------------------------------------------------
    def default_dataset_id(self, episodes=None, npz=None, **_) -> str:
        return nav.default_dataset_id(self.name, episodes, npz)

    @property
    def npz_example(self) -> str:
        return f"pointmaze-{nav.maze_of(self.name)}-navigate-v0.npz"

    def _generator(self):
        return nav.generate_navigate_dataset, nav.DEFAULT_EPISODES

    def train_command(self, variant: str) -> str:
        return f"dfplan-train env={self.name} +experiment=ogbench_maze"

    def dataset_mismatch(self, dataset) -> str | None:
        env_id = getattr(dataset.spec.env_spec, "id", None) or ""
        if not env_id.startswith(f"pointmaze-{nav.maze_of(self.name)}"):
            return f"it was recorded in {env_id}"
        dim = dataset.spec.observation_space["observation"].shape[0]
        want = 4 if nav.goal_in_state(self.name) else 2
        return None if dim == want else f"its observations are {dim}-D, {self.name}'s are {want}-D"

    # --- guidance ----------------------------------------------------------------------------------
    def _objective(self, name):
        return lambda goal: goal_distance(goal, self.goal_dims)

    def plan_value(self, states, goal, frame_stack=1):
        """MCTD's maze value (`reach_value`): 0 for a planned step inside a token longer than MAX_PLAN_STEP, else how
        soon (or how near) the planned xy reaches the goal. Uses no map."""
        return reach_value(states[..., :2], goal, self.success_radius, MAX_PLAN_STEP, frame_stack=frame_stack)

    # --- scoring and pictures ------------------------------------------------------------------------
    def summarize(self, episodes, ref_scores=None) -> dict:
        return {**super().summarize(episodes, ref_scores), **success_by_task(episodes, task_id_of, NUM_TASKS)}

    def describe(self, s: dict) -> str:
        per_task = " ".join(f"t{k}:{s[f'task{k}_success']:.0f}" for k in range(1, 6) if f"task{k}_success" in s)
        ttg = "" if s["mean_time_to_goal"] is None else f", time to goal {s['mean_time_to_goal']:.0f} steps"
        return (f"{self.name}, {s['episodes']} episodes: success {s['score_mean']:.1f} ± {s['score_se']:.1f} % "
                f"(within 1.0 of the goal; per task {per_task}){ttg}, {s['episodes_per_minute']:.0f} episodes/min")

    def _shifted(self, episodes: list[EpisodeResult]) -> list[EpisodeResult]:
        d = self._shift
        return [EpisodeResult(e.seed, e.ret, e.success, e.time_to_goal, e.path + d, e.goal + d,
                              [p[:, :2] + d for p in e.plans]) for e in episodes]

    def plot_episodes(self, episodes, path, title="", ref_scores=None) -> Path:
        labels = ["reached" if e.success else "missed" for e in episodes]
        return plot_maze_episodes(self.layout, self._shifted(episodes), path, title=title, labels=labels,
                                  radius=self.success_radius)

    def animate(self, states, path, goals, plans, steps, title=""):
        """Top-down over the maze: the point's path, the plan being followed, the goal."""
        d = self._shift
        plans = [None if p is None else p[:, :2] + d for p in plans]
        return animate_maze(self.layout, path[:, :2] + d, goals[:, :2] + d, plans, steps, title=title,
                            radius=self.success_radius)

    def plot_plans(self, states, goals, path, title="") -> Path:
        return plot_maze_plans(self.layout, states[..., :2] + self._shift, np.asarray(goals) + self._shift, path,
                               title=title, radius=self.success_radius)

    def plan_stats(self, states, goals) -> dict:
        """Where plans end, how often they cross a wall, and how far they step: the point moves at most
        0.2 * sqrt(2) per step, so a longer step is a jump the env cannot make."""
        in_wall = self.layout.in_wall(states[..., :2] + self._shift)
        steps = np.linalg.norm(np.diff(states[..., :2], axis=1), axis=-1)
        return {**super().plan_stats(states, goals), "in_wall": float(in_wall.mean()),
                "through_wall": float(in_wall.any(axis=1).mean()),
                "jumps": float((steps > nav.STEP_SIZE * np.sqrt(2) * 1.05).mean())}

    def track_action(self, states, targets, planned_actions):
        """The point's position controller (`dfplan.envs.ogbench_maze.track_action`)."""
        return nav.track_action(states, targets)

    def blocked(self, states, actions, next_states):
        """The kinematic point's rule (`dfplan.envs.ogbench_maze.blocked`)."""
        return nav.blocked(states, actions, next_states)

    def expert(self, lookahead: bool = False):
        return nav.NavigateExpertController(self.name)


def named_tasks() -> dict:
    names = [*nav.NAVIGATE_MAZES, *(name + nav.GOAL_SUFFIX for name in nav.NAVIGATE_MAZES)]
    return {name: (lambda name=name: NavigateTask(name)) for name in names}


def from_spec(spec: dict) -> NavigateTask:
    return NavigateTask(spec["name"])
