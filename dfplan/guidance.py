"""Guidance objectives: differentiable functions of a planned trajectory, to be maximized.

An objective maps raw (unnormalized) planned states [B, H+1, Ds] and actions [B, H, Da] to a scalar per
batch element [B]. The sampler takes its gradient w.r.t. the noisy tokens, through the RNN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
REACH_WEIGHT = 0.5  # reach-then-move objectives (Fetch's reach_then_carry, OGBench's reach_then_place): weight of the
#   gripper-to-object distance against the object-to-goal one


def goal_distance(goal: torch.Tensor, pos_dims: tuple[int, ...] = (0, 1)) -> Objective:
    """The Diffusion Forcing maze objective: J = -sum_t ||pos_t - goal||_2 over all planned steps (`pos_dims`: the
    state dims the goal refers to: the maze position, a manipulated object's position, ...)."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[:, 1:, list(pos_dims)]
        return -(pos - goal[:, None, :]).norm(dim=-1).sum(-1)

    return objective


def episode_goal_distance(goal: torch.Tensor, episode_steps: int, pos_dims: tuple[int, ...] = (0, 1)) -> Objective:
    """The paper code's form of `goal_distance`: J = -episode_steps * mean_t ||pos_t - goal||_2, so each planned
    step weighs episode_steps / plan length: more as a plan to the episode's end gets shorter."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[:, 1:, list(pos_dims)]
        return -episode_steps * (pos - goal[:, None, :]).norm(dim=-1).mean(-1)

    return objective


def point_distance(a_dims: tuple[int, ...], b_dims: tuple[int, ...]) -> Objective:
    """J = -sum_t ||states[a_dims] - states[b_dims]||: bring two points of the state together (e.g. the gripper to
    the object it must grasp)."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        s = states[:, 1:]
        return -(s[..., list(a_dims)] - s[..., list(b_dims)]).norm(dim=-1).sum(-1)

    return objective


def goal_reward(goal: torch.Tensor, radius: float = 0.45, sharpness: float = 10.0,
                pos_dims: tuple[int, int] = (0, 1)) -> Objective:
    """A dense, smooth stand-in for the sparse maze reward: sum_t sigmoid(sharpness * (radius - dist_t))."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        dist = (states[:, 1:, list(pos_dims)] - goal[:, None, :]).norm(dim=-1)
        return torch.sigmoid(sharpness * (radius - dist)).sum(-1)

    return objective


def geodesic_distance(fields: torch.Tensor, origin: torch.Tensor, step: float,
                      pos_dims: tuple[int, int] = (0, 1), value_fields: torch.Tensor | None = None) -> Objective:
    """J = -sum_t D(pos_t): like `goal_distance`, but D is the shortest-path distance around the walls
    (`MazeLayout.geodesic_field`, one field [B, rows, cols] per batch element, bilinearly interpolated), so
    guidance leads around walls instead of into the wall nearest the goal. Needs the maze layout.
    `value_fields` (same shape): J takes its value from these and its gradient from `fields` (e.g. walls that
    cost more in the value than a gradient may climb)."""
    n_r, n_c = fields.shape[-2:]
    # channels of one grid_sample: [gradient field] or [gradient field, value field]
    channels = fields[:, None] if value_fields is None else torch.stack([fields, value_fields], dim=1)

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[:, 1:, list(pos_dims)]
        col = (pos[..., 0] - origin[0]) / step  # grid coordinates of each planned position
        row = (origin[1] - pos[..., 1]) / step
        grid = torch.stack([col / (n_c - 1) * 2 - 1, row / (n_r - 1) * 2 - 1], dim=-1)[:, None]  # [B, 1, T, 2]
        # keep sample points finite and on the field: grid_sample's CPU backward crashes the process on NaN, and
        # outside the field the border value (zero gradient) is what padding_mode="border" gives anyway
        grid = torch.nan_to_num(grid, nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1.0, 1.0)
        d = F.grid_sample(channels.to(pos), grid, mode="bilinear", padding_mode="border",
                          align_corners=True)[:, :, 0].sum(-1)  # [B, channels]
        if value_fields is None:
            return -d[:, 0]
        return -(d[:, 0] + (d[:, 1] - d[:, 0]).detach())

    return objective


class GeodesicGuide:
    """Builds `geodesic_distance` objectives for a maze, one field per distinct goal (cached). The field keeps
    paths `clearance` metres clear of the walls and rises `wall_slope` per metre into them
    (`MazeLayout.geodesic_field`): a wall point continues its nearest free point's distance, so the gradient
    everywhere points along the way round the walls and never jumps at a wall's edge. The objective's value (what
    best-of-N `candidates` ranks plans by) rises `value_wall_slope` per metre instead, so a plan through a wall never
    wins; its gradient keeps the gentle `wall_slope`, since a steep one would push guided plans away from any goal
    beside a wall. (How the defaults were chosen: docs/lab-notes.)"""

    def __init__(self, layout, resolution: int = 8, clearance: float = 0.1, wall_slope: float = 2.0,
                 value_wall_slope: float = 20.0, max_cached: int = 512):
        self.layout, self.resolution, self.max_cached = layout, resolution, max_cached
        self.clearance, self.wall_slope, self.value_wall_slope = clearance, wall_slope, value_wall_slope
        origin, self.step = layout.field_frame(resolution)
        self.origin = torch.as_tensor(origin, dtype=torch.float32)
        self._fields: dict[tuple[float, float], torch.Tensor] = {}
        self._last: tuple[tuple, Objective] | None = None  # goals of the last call and their objective

    def field(self, key: tuple[float, float]) -> torch.Tensor:
        """[2, rows, cols]: the field with `wall_slope` (the gradient's) and with `value_wall_slope` (the value's)."""
        if key not in self._fields:
            if len(self._fields) >= self.max_cached:  # random goals: one field per episode; keep the newest
                self._fields.pop(next(iter(self._fields)))
            fields, _, _ = self.layout.geodesic_fields(np.asarray(key), self.resolution, clearance=self.clearance,
                                                       wall_slopes=(self.wall_slope, self.value_wall_slope))
            self._fields[key] = torch.from_numpy(fields)
        return self._fields[key]

    def __call__(self, goal: torch.Tensor) -> Objective:
        """goal [B, 2] raw -> objective for the planner (an MPC controller asks again at every replan)."""
        # a goal outside the maze means its nearest point inside (the field of a goal at 1e38 overflows to inf)
        lo, hi = self.origin.numpy() * [1, -1], self.origin.numpy() * [-1, 1]
        inside = np.clip(np.nan_to_num(goal.detach().cpu().numpy()), lo, hi)
        keys = tuple((round(float(x), 3), round(float(y), 3)) for x, y in inside)
        if self._last is None or self._last[0] != (keys, goal.device):
            fields = torch.stack([self.field(k) for k in keys]).to(goal.device)  # [B, 2, rows, cols]
            self._last = ((keys, goal.device), geodesic_distance(fields[:, 0], self.origin.to(goal.device),
                                                                 self.step, value_fields=fields[:, 1]))
        return self._last[1]


def revisit_penalty(visited: torch.Tensor, weight: float | torch.Tensor, radius: float,
                    goal: torch.Tensor | None = None, pos_dims: tuple[int, ...] = (0, 1)) -> Objective:
    """J = -sum_t m_t * sum_s w_s exp(-||pos_t - v_s||^2 / (2 radius^2)): each planned position pays for every
    recorded visit v_s [B, S, len(pos_dims)] near it, so guidance turns plans away from where the episode has already
    been. `weight`: w_s, one for every visit or one per visit [B, S]. With the goal [B, len(pos_dims)],
    m_t = 1 - exp(-||pos_t - goal||^2 / (2 radius^2)): being at the goal costs nothing, however long the episode stays
    there (else 1). Knows no map; only the executed path."""

    def objective(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[:, 1:, list(pos_dims)]
        d2 = (pos[:, :, None] - visited.to(pos)[:, None]).square().sum(-1)  # [B, T, S]; smooth where pos = v_s
        near = torch.exp(-d2 / (2 * radius ** 2))
        near = (near * weight.to(pos)[:, None]).sum(-1) if torch.is_tensor(weight) else weight * near.sum(-1)
        if goal is not None:
            near = near * -torch.expm1(-(pos - goal.to(pos)[:, None]).square().sum(-1) / (2 * radius ** 2))
        return -near.sum(1)

    return objective


@dataclass(frozen=True)
class Penalized:
    """An objective toward the goal plus a penalty, kept apart: J = toward + penalty. Tree search's meta-actions
    reweight `toward` (the pull to the goal) and leave `penalty` (e.g. `revisit_penalty`) as it is in every child."""

    toward: Objective
    penalty: Objective

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.toward(states, actions) + self.penalty(states, actions)


def per_candidate(objective: Objective, n: int) -> Objective:
    """`objective` (made for B rows) applied to B*n rows holding n candidate plans per row, row-major
    (row b*n + j = candidate j of row b, as `repeat_interleave` lays them out): one call per candidate."""

    def objective_n(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        s, a = states.unflatten(0, (-1, n)), actions.unflatten(0, (-1, n))
        return torch.stack([objective(s[:, j], a[:, j]) for j in range(n)], dim=1).flatten()

    return objective_n


def combine(*weighted: tuple[float, Objective]) -> Objective:
    """Weighted sum of objectives, e.g. combine((1.0, goal_distance(g)), (5.0, goal_reward(g)))."""

    def objective(states, actions):
        return sum(w * f(states, actions) for w, f in weighted)

    return objective
