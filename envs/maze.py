"""PointMaze layouts and grid geometry as plain functions of the maze map.

Coordinates follow Gymnasium-Robotics PointMaze-v3: the maze is centred on the origin, x grows with the
column index and y shrinks with the row index. Cells are `maze_size_scaling` (1.0) wide.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dfplan.errors import UserError

G = "g"  # a goal cell in Gymnasium-Robotics maze maps

U_MAZE = [
    [1, 1, 1, 1, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 1, 0, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 1, 1, 1],
]
MEDIUM_MAZE = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]
LARGE_MAZE = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
    [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
    [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
    [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
]


@dataclass(frozen=True)
class MazeSpec:
    """A named maze: its layout, the D4RL evaluation goal cell and the episode length."""

    name: str
    maze_map: tuple
    eval_goal_cell: tuple[int, int]
    max_episode_steps: int


MAZES: dict[str, MazeSpec] = {
    "pointmaze-umaze": MazeSpec("pointmaze-umaze", tuple(map(tuple, U_MAZE)), (1, 1), 300),
    "pointmaze-medium": MazeSpec("pointmaze-medium", tuple(map(tuple, MEDIUM_MAZE)), (6, 6), 600),
    "pointmaze-large": MazeSpec("pointmaze-large", tuple(map(tuple, LARGE_MAZE)), (7, 9), 800),
}


def get_maze(name: str) -> MazeSpec:
    if name not in MAZES:
        raise UserError(f"unknown env {name!r}; choose one of {sorted(MAZES)} (or pass maze_map=[[...], ...])")
    return MAZES[name]


def validate_maze_map(maze_map) -> list[list[int]]:
    """The map as rows of ints, or a UserError saying what is wrong: rows of equal length holding only 0 (free) and
    1 (wall), walls all round (the point must not leave the maze), and at least two free cells, all connected
    (the env draws a start and a different goal cell; with one free cell it would search forever)."""
    hint = "maze_map must be a list of equally long rows of 0 (free) and 1 (wall), e.g. [[1,1,1,1],[1,0,0,1],[1,1,1,1]]"
    rows_given = isinstance(maze_map, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in maze_map)
    if not rows_given or not maze_map:
        raise UserError(f"{hint}; got {maze_map!r}"[:300])
    if len({len(r) for r in maze_map}) != 1:
        raise UserError(f"{hint}; got rows of lengths {[len(r) for r in maze_map]}")
    bad = [c for r in maze_map for c in r if isinstance(c, bool) or c not in (0, 1)]
    if bad:
        raise UserError(f"{hint}; got the cell value {bad[0]!r}")
    rows = [[int(c) for c in r] for r in maze_map]
    grid = np.array(rows)
    if not (grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()):
        raise UserError("maze_map needs walls (1) all round its border")
    layout = MazeLayout(rows)
    if len(layout.free_cells) < 2:
        raise UserError(f"maze_map has {len(layout.free_cells)} free cell(s); it needs at least 2 (a start and a goal)")
    dist = layout.distances_to(layout.free_cells[0])
    unreachable = [c for c in layout.free_cells if dist[c] < 0]
    if unreachable:
        raise UserError(f"maze_map's free cells are not all connected: {unreachable[0]} cannot be reached from "
                        f"{layout.free_cells[0]}")
    return rows


def custom_maze(maze_map, goal_cell=None, max_episode_steps: int | None = None,
                name: str = "pointmaze-custom") -> MazeSpec:
    """A MazeSpec for a user's own layout; goal cell defaults to the free cell farthest from the first free cell."""
    layout = MazeLayout(validate_maze_map(maze_map))
    if goal_cell is None:
        start = layout.free_cells[0]
        dist = layout.distances_to(start)
        goal_cell = max(layout.free_cells, key=lambda c: dist[c])
    goal_cell = tuple(int(v) for v in goal_cell)
    if goal_cell not in layout.free_cells:
        raise UserError(f"goal_cell={list(goal_cell)} is not a free cell of maze_map; free cells: "
                        f"{[list(c) for c in layout.free_cells][:12]}")
    if max_episode_steps is None:
        max_episode_steps = int(100 * np.ceil(len(layout.free_cells) / 3 + 2))
    if int(max_episode_steps) < 1:
        raise UserError(f"max_episode_steps={max_episode_steps} must be >= 1")
    return MazeSpec(name, tuple(map(tuple, layout.maze_map)), goal_cell, int(max_episode_steps))


class MazeLayout:
    """Grid geometry of a maze map: cell <-> xy, walls, shortest grid paths (BFS)."""

    def __init__(self, maze_map, scale: float = 1.0):
        rows = [list(r) for r in maze_map]
        if not rows or len({len(r) for r in rows}) != 1:
            raise ValueError("maze_map must be a non-empty list of equally long rows")
        self.maze_map = [[c if c in (0, 1) else c for c in r] for r in rows]
        self.walls = np.array([[c == 1 for c in r] for r in rows], dtype=bool)
        if self.walls.all():
            raise ValueError("maze_map has no free cell")
        self.scale = float(scale)
        self.n_rows, self.n_cols = self.walls.shape
        self.x_center = self.n_cols / 2 * self.scale
        self.y_center = self.n_rows / 2 * self.scale
        self._dist_cache: dict[tuple[int, int], np.ndarray] = {}

    @cached_property
    def free_cells(self) -> list[tuple[int, int]]:
        return [(int(i), int(j)) for i, j in zip(*np.nonzero(~self.walls))]

    def cell_to_xy(self, cell) -> np.ndarray:
        i, j = cell
        return np.array([(j + 0.5) * self.scale - self.x_center, self.y_center - (i + 0.5) * self.scale])

    def xy_to_cell(self, xy) -> tuple[int, int]:
        xy = np.asarray(xy, dtype=float)
        i = int(np.floor((self.y_center - xy[..., 1]) / self.scale))
        j = int(np.floor((xy[..., 0] + self.x_center) / self.scale))
        return min(max(i, 0), self.n_rows - 1), min(max(j, 0), self.n_cols - 1)

    def in_wall(self, xy) -> np.ndarray:
        """Boolean array: does each point (..., 2) lie inside a wall cell (or outside the maze)?"""
        xy = np.asarray(xy, dtype=float)
        i = np.floor((self.y_center - xy[..., 1]) / self.scale).astype(int)
        j = np.floor((xy[..., 0] + self.x_center) / self.scale).astype(int)
        outside = (i < 0) | (i >= self.n_rows) | (j < 0) | (j >= self.n_cols)
        return outside | self.walls[np.clip(i, 0, self.n_rows - 1), np.clip(j, 0, self.n_cols - 1)]

    def clear_of_walls(self, xy, clearance: float) -> np.ndarray:
        """Boolean array: is each point (..., 2) outside the walls and at least `clearance` away from them
        (checked in 8 directions)?"""
        xy = np.asarray(xy, dtype=float)
        clear = ~self.in_wall(xy)
        if clearance > 0:
            for angle in np.arange(8) * np.pi / 4:
                clear &= ~self.in_wall(xy + clearance * np.array([np.cos(angle), np.sin(angle)]))
        return clear

    def distances_to(self, target) -> np.ndarray:
        """BFS distance (in cells, 4-connected) from every cell to `target`; -1 for walls/unreachable."""
        target = tuple(target)
        if target not in self._dist_cache:
            dist = np.full(self.walls.shape, -1, dtype=int)
            dist[target] = 0
            queue = deque([target])
            while queue:
                i, j = queue.popleft()
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    ni, nj = i + di, j + dj
                    if 0 <= ni < self.n_rows and 0 <= nj < self.n_cols and not self.walls[ni, nj] and dist[ni, nj] < 0:
                        dist[ni, nj] = dist[i, j] + 1
                        queue.append((ni, nj))
            self._dist_cache[target] = dist
        return self._dist_cache[target]

    def path(self, start, goal) -> list[tuple[int, int]]:
        """Shortest grid path of cells from `start` to `goal`, both included."""
        dist = self.distances_to(goal)
        cell = tuple(start)
        if dist[cell] < 0:
            raise ValueError(f"cell {goal} is not reachable from {start}")
        out = [cell]
        while dist[cell] > 0:
            i, j = cell
            cell = min(
                ((i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
                 if 0 <= i + di < self.n_rows and 0 <= j + dj < self.n_cols and dist[i + di, j + dj] >= 0),
                key=lambda c: dist[c],
            )
            out.append(cell)
        return out

    def field_frame(self, resolution: int) -> tuple[np.ndarray, float]:
        """(xy of the first grid point, grid step) of a grid with `resolution` points per cell side."""
        step = self.scale / resolution
        return np.array([-self.x_center + step / 2, self.y_center - step / 2]), step

    def geodesic_field(self, goal_xy, resolution: int = 8, wall_slope: float = 2.0, clearance: float = 0.0
                       ) -> tuple[np.ndarray, np.ndarray, float]:
        """The field of `geodesic_fields` for one wall slope: (field [rows, cols], xy of field[0, 0], grid step)."""
        fields, origin, step = self.geodesic_fields(goal_xy, resolution, (wall_slope,), clearance)
        return fields[0], origin, step

    def geodesic_fields(self, goal_xy, resolution: int = 8, wall_slopes: tuple[float, ...] = (2.0,),
                        clearance: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
        """Shortest-path distance through free space from every point of a grid (`resolution` points per cell
        side) to `goal_xy`, 8-connected. A point inside a wall takes the distance of the free point nearest to it
        plus `wall_slope` times its depth into the wall, so a gradient leads out of walls without a cliff at their
        edge (a cliff's slope, ~100 per metre, outweighs the goal's pull of 1 wherever a plan grazes a wall) and
        without a short cut through them. `clearance` > 0 counts the strip of that width along the walls as wall,
        so shortest paths keep clear of walls and corners (a path that grazes a corner leads a plan into it).
        One field per slope of `wall_slopes`, from one shortest-path computation.
        Returns (fields [slopes, rows, cols], xy of field[0, 0], grid step); field[r, c] is at xy = origin +
        (c * step, -r * step)."""
        origin, step = self.field_frame(resolution)
        n_r, n_c = self.n_rows * resolution, self.n_cols * resolution
        cols, rows = np.meshgrid(np.arange(n_c), np.arange(n_r))
        pts = np.stack([origin[0] + cols * step, origin[1] - rows * step], axis=-1)
        gr = int(np.clip(round((origin[1] - goal_xy[1]) / step), 0, n_r - 1))
        gc = int(np.clip(round((goal_xy[0] - origin[0]) / step), 0, n_c - 1))
        free = self.clear_of_walls(pts, clearance)
        if not free[gr, gc]:  # a goal closer to a wall than the clearance: paths may come as close as it is
            free = ~self.in_wall(pts)
        if not free[gr, gc]:  # a goal inside a wall (or outside the maze) means the free point nearest to it
            gr, gc = np.unravel_index(np.where(free, np.linalg.norm(pts - goal_xy, axis=-1), np.inf).argmin(),
                                      free.shape)
        dist = np.full(free.shape, np.inf)
        dist[gr, gc] = float(np.linalg.norm(pts[gr, gc] - goal_xy))
        dist, _ = _relax(dist, free, step)  # through free space
        fields = _extend_into_walls(dist, free, step, np.asarray(wall_slopes, dtype=float))
        for field in fields:  # free space cut off from the goal (a custom map's island): the top value
            finite = np.isfinite(field)
            field[~finite] = field[finite].max() + self.scale
        return fields.astype(np.float32), origin, step

    def line_of_sight(self, a_xy, b_xy, margin: float = 0.15, samples: int = 24) -> bool:
        """True when the straight segment a->b (widened by `margin`) crosses no wall cell."""
        t = np.linspace(0.0, 1.0, samples)[:, None]
        pts = np.asarray(a_xy)[None] * (1 - t) + np.asarray(b_xy)[None] * t
        offsets = np.array([[0, 0], [margin, margin], [margin, -margin], [-margin, margin], [-margin, -margin]])
        return not self.in_wall(pts[:, None, :] + offsets[None]).any()


def _relax(dist: np.ndarray, allowed: np.ndarray, step: float, carry: np.ndarray | None = None):
    """Bellman-Ford sweeps on an 8-connected grid, vectorized: shortest distances from the finite entries of
    `dist`, moving only onto `allowed` points at `step` per grid step (diagonals sqrt(2) x); `carry` (optional)
    is copied along from each point's nearest source. Converges in ~ path length / step sweeps."""
    n_r, n_c = dist.shape
    moves = [(di, dj, step * float(np.hypot(di, dj))) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
    while True:
        new, new_carry = dist.copy(), None if carry is None else carry.copy()
        for di, dj, w in moves:
            src = (slice(max(-di, 0), n_r + min(-di, 0)), slice(max(-dj, 0), n_c + min(-dj, 0)))
            dst = (slice(max(di, 0), n_r + min(di, 0)), slice(max(dj, 0), n_c + min(dj, 0)))
            shifted = np.full_like(dist, np.inf)
            shifted[dst] = dist[src] + w
            better = allowed & (shifted < new)
            new = np.where(better, shifted, new)
            if carry is not None:
                moved = np.zeros_like(carry)
                moved[dst] = carry[src]
                new_carry = np.where(better, moved, new_carry)
        if np.array_equal(new, dist):
            return dist, carry
        dist, carry = new, new_carry


def _extend_into_walls(field: np.ndarray, free: np.ndarray, step: float, slopes: np.ndarray) -> np.ndarray:
    """`field` (finite on free points) extended into the walls, once per slope of `slopes` [S] -> [S, rows, cols]:
    each wall point gets the value of its nearest free point plus the slope x its distance from it (a wall point no
    free point reaches keeps inf)."""
    depth = np.where(free, 0.0, np.inf)
    depth, nearest = _relax(depth, ~free, step, carry=np.where(free, field, np.inf))
    return np.where(free, field, nearest + slopes[:, None, None] * depth)
