"""Scripted controllers that know the maze: the D4RL waypoint expert and a faster look-ahead oracle."""

from __future__ import annotations

import numpy as np

from .maze import MazeLayout


class WaypointExpert:
    """D4RL's maze2d expert: PD control toward the centre of the next cell on the shortest grid path.

    `a = kp * (waypoint - xy) - kd * v`, clipped to [-1, 1]. Inside the goal cell the waypoint is the goal itself.
    With `lookahead=True` the waypoint is the farthest path cell in straight line of sight (a faster
    oracle, used to show how close a score is to the physical limit).
    """

    def __init__(self, layout: MazeLayout, kp: float = 10.0, kd: float = 1.0, lookahead: bool = False):
        self.layout, self.kp, self.kd, self.lookahead = layout, kp, kd, lookahead

    def waypoint(self, xy: np.ndarray, goal: np.ndarray) -> np.ndarray:
        cells = self.layout.path(self.layout.xy_to_cell(xy), self.layout.xy_to_cell(goal))
        if len(cells) == 1:
            return goal
        if not self.lookahead:
            return self.layout.cell_to_xy(cells[1])
        if self.layout.line_of_sight(xy, goal):
            return goal
        best = self.layout.cell_to_xy(cells[1])
        for cell in cells[2:-1]:
            target = self.layout.cell_to_xy(cell)
            if not self.layout.line_of_sight(xy, target):
                break
            best = target
        return best

    def __call__(self, obs) -> np.ndarray:
        """Action for a PointMaze dict observation (or a flat [x, y, vx, vy] with `goal` in a dict)."""
        state = np.asarray(obs["observation"], dtype=float)
        goal = np.asarray(obs["desired_goal"], dtype=float)
        wp = self.waypoint(state[:2], goal)
        return np.clip(self.kp * (wp - state[:2]) - self.kd * state[2:4], -1.0, 1.0)
