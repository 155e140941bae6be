"""Environments, mazes, scripted experts and dataset recipes (installed as `dfplan.envs`)."""

from .experts import WaypointExpert
from .maze import MAZES, MazeLayout, MazeSpec, custom_maze, get_maze
from .pointmaze import make_env, maze_layout_of

__all__ = ["MAZES", "MazeLayout", "MazeSpec", "custom_maze", "get_maze", "WaypointExpert", "make_env", "maze_layout_of"]
