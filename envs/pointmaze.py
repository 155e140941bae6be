"""Gymnasium PointMaze environments for the two evaluation protocols.

- goal="fixed": single-task, the goal is always the D4RL evaluation cell (the maze map marks it "g"),
  start cells are drawn among the other free cells.
- goal="random": multi-goal, a new goal cell (and start cell) is drawn at every reset.

Both are `continuing_task=True, reset_target=False`: reaching the goal does not end the episode, and the
sparse reward counts every step spent within 0.45 of it, as in D4RL's maze2d evaluation.
"""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym

with contextlib.redirect_stderr(io.StringIO()):  # it prints an unrelated Adroit notice on import
    import gymnasium_robotics

from .maze import G, MazeLayout, MazeSpec, get_maze

gym.register_envs(gymnasium_robotics)

GYM_IDS = {"pointmaze-umaze": "PointMaze_UMaze-v3", "pointmaze-medium": "PointMaze_Medium-v3",
           "pointmaze-large": "PointMaze_Large-v3"}


def eval_maze_map(spec: MazeSpec) -> list[list]:
    """The maze map with the evaluation goal cell marked "g" (the D4RL single-goal protocol)."""
    rows = [list(r) for r in spec.maze_map]
    i, j = spec.eval_goal_cell
    rows[i][j] = G
    return rows


def make_env(name: str | MazeSpec = "pointmaze-umaze", goal: str = "fixed", max_episode_steps: int | None = None,
             render_mode: str | None = None, **kwargs) -> gym.Env:
    """A PointMaze-v3 env for evaluation. `name` is a registered maze name or a `MazeSpec` (custom maze)."""
    spec = get_maze(name) if isinstance(name, str) else name
    if goal not in ("fixed", "random"):
        raise ValueError(f"goal must be 'fixed' or 'random', got {goal!r}")
    maze_map = eval_maze_map(spec) if goal == "fixed" else [list(r) for r in spec.maze_map]
    return gym.make(
        "PointMaze_UMaze-v3",  # the maze comes from maze_map; this id only picks the PointMaze class
        maze_map=maze_map, continuing_task=True, reset_target=False,
        max_episode_steps=int(max_episode_steps or spec.max_episode_steps), render_mode=render_mode, **kwargs,
    )


def maze_layout_of(env: gym.Env) -> MazeLayout:
    maze = env.unwrapped.maze
    return MazeLayout(maze.maze_map, scale=maze.maze_size_scaling)
