"""Pictures of mazes, plans and executed paths (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dfplan.envs import MazeLayout  # noqa: E402


def draw_maze(ax, layout: MazeLayout) -> None:
    for i, j in zip(*np.nonzero(layout.walls)):
        x0, y1 = layout.cell_to_xy((i, j)) - layout.scale / 2 * np.array([1, -1])
        ax.add_patch(plt.Rectangle((x0, y1 - layout.scale), layout.scale, layout.scale, color="0.35"))
    ax.set_xlim(-layout.x_center, layout.x_center)
    ax.set_ylim(-layout.y_center, layout.y_center)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_paths(layout: MazeLayout, episodes, path: str | Path, title: str = "", max_episodes: int = 6,
               plans_every: int = 4) -> Path:
    """One panel per episode: executed path (solid), plans made along the way (thin), start, goal."""
    episodes = list(episodes)[:max_episodes]
    cols = min(3, len(episodes))
    rows = int(np.ceil(len(episodes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows * layout.n_rows / layout.n_cols + 0.4),
                             squeeze=False)
    for ax in axes.flat[len(episodes):]:
        ax.axis("off")
    for ax, ep in zip(axes.flat, episodes):
        draw_maze(ax, layout)
        for k, plan in enumerate(ep.plans[::plans_every]):
            ax.plot(plan[:, 0], plan[:, 1], color="tab:orange", lw=0.8, alpha=0.5, label="planned" if k == 0 else None)
        ax.plot(ep.path[:, 0], ep.path[:, 1], color="tab:blue", lw=2, label="executed")
        ax.scatter(*ep.path[0], color="tab:green", s=60, zorder=5, label="start")
        ax.scatter(*ep.goal, color="tab:red", marker="*", s=200, zorder=5, label="goal")
        ax.add_patch(plt.Circle(ep.goal, 0.45, color="tab:red", fill=False, ls="--", lw=1))
        ax.set_title(f"seed {ep.seed}: return {ep.ret:.0f}", fontsize=9)
    axes.flat[0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_plan(layout: MazeLayout, states: np.ndarray, goal: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Planned paths [B, H+1, Ds] from their start states to the goal(s), all in one panel."""
    fig, ax = plt.subplots(figsize=(5, 5 * layout.n_rows / layout.n_cols))
    draw_maze(ax, layout)
    goal = np.broadcast_to(np.asarray(goal), (len(states), 2))
    for k, s in enumerate(states):
        ax.plot(s[:, 0], s[:, 1], lw=1.5, alpha=0.8, label="plan" if k == 0 else None)
        ax.scatter(*s[0, :2], color="tab:green", s=30, zorder=5)
    for g in np.unique(goal, axis=0):
        ax.scatter(*g, color="tab:red", marker="*", s=200, zorder=6)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
