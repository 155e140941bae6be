"""Pictures of mazes, plans and executed paths (matplotlib, headless). Tasks pick the drawing they need."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402


def draw_maze(ax, layout) -> None:
    for i, j in zip(*np.nonzero(layout.walls)):
        x0, y1 = layout.cell_to_xy((i, j)) - layout.scale / 2 * np.array([1, -1])
        ax.add_patch(plt.Rectangle((x0, y1 - layout.scale), layout.scale, layout.scale, color="0.35"))
    ax.set_xlim(-layout.x_center, layout.x_center)
    ax.set_ylim(-layout.y_center, layout.y_center)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_handles(planned: str | None, radius: float) -> list:
    handles = [Line2D([], [], color="tab:blue", lw=2, label="executed")]
    if planned:
        handles.insert(0, Line2D([], [], color="tab:orange", lw=1, label=planned))
    return handles + [Line2D([], [], color="tab:green", marker="o", ls="", label="start"),
                      Line2D([], [], color="tab:red", marker="*", ms=12, ls="", label="goal"),
                      Line2D([], [], color="tab:red", ls="--", label=f"goal radius {radius}")]


def plot_maze_episodes(layout, episodes, path: str | Path, title: str = "", labels=None, max_panels: int = 12,
                       plans_every: int = 4, radius: float = 0.45) -> Path:
    """One panel per episode (up to `max_panels`): executed path, plans made along the way, start, goal.
    `labels`: a title per episode (e.g. its normalized score)."""
    episodes = list(episodes)
    shown = episodes[:max_panels]
    cols = min(4, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    aspect = layout.n_rows / layout.n_cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows * aspect + 1.0), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for k, (ax, ep) in enumerate(zip(axes.flat, shown)):
        draw_maze(ax, layout)
        for plan in ep.plans[::plans_every]:
            ax.plot(plan[:, 0], plan[:, 1], color="tab:orange", lw=0.8, alpha=0.5)
        ax.plot(ep.path[:, 0], ep.path[:, 1], color="tab:blue", lw=2)
        ax.scatter(*ep.path[0], color="tab:green", s=50, zorder=5)
        ax.scatter(*ep.goal, color="tab:red", marker="*", s=180, zorder=5)
        ax.add_patch(plt.Circle(ep.goal, radius, color="tab:red", fill=False, ls="--", lw=1))
        label = labels[k] if labels is not None else f"return {ep.ret:.0f}"
        ax.set_title(f"seed {ep.seed}: {label}", fontsize=8)
    more = f" (first {len(shown)} of {len(episodes)} episodes)" if len(episodes) > len(shown) else ""
    fig.suptitle(title + more, fontsize=10)
    fig.legend(handles=_legend_handles("planned" if any(ep.plans for ep in shown) else None, radius), loc="outside lower center",
               ncol=5, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_maze_plans(layout, states: np.ndarray, goal: np.ndarray, path: str | Path, title: str = "",
                    radius: float = 0.45) -> Path:
    """Planned paths [B, H+1, Ds] from their start states to the goal(s), all in one panel, with a legend."""
    fig, ax = plt.subplots(figsize=(5, 5 * layout.n_rows / layout.n_cols + 0.8), layout="constrained")
    draw_maze(ax, layout)
    goal = np.broadcast_to(np.asarray(goal), (len(states), 2))
    for s in states:
        ax.plot(s[:, 0], s[:, 1], lw=1.5, alpha=0.8)
        ax.scatter(*s[0, :2], color="tab:green", s=30, zorder=5)
    for g in np.unique(goal, axis=0):
        ax.scatter(*g, color="tab:red", marker="*", s=200, zorder=6)
        ax.add_patch(plt.Circle(g, radius, color="tab:red", fill=False, ls="--", lw=1))
    handles = [Line2D([], [], color="0.3", lw=1.5, label="plan (one colour each)"),
               Line2D([], [], color="tab:green", marker="o", ls="", label="start"),
               Line2D([], [], color="tab:red", marker="*", ms=12, ls="", label="goal")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_manipulation_episodes(episodes, path: str | Path, title: str = "", grip_dims=(0, 1, 2), radius: float = 0.05,
                               units: str = "m",
                               max_episodes: int = 6) -> Path:
    """Per episode a top view (x, y) and a side view (x, z): the gripper's and the object's paths against the goal."""
    shown = list(episodes)[:max_episodes]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.8 * len(shown), 5.6), squeeze=False, layout="constrained")
    for k, ep in enumerate(shown):
        for row, (a, b, name) in enumerate(((0, 1, "top (x, y)"), (0, 2, "side (x, z)"))):
            ax = axes[row, k]
            if ep.states is not None:
                grip = ep.states[:, list(grip_dims)]
                ax.plot(grip[:, a], grip[:, b], color="tab:orange", lw=1.2)
            ax.plot(ep.path[:, a], ep.path[:, b], color="tab:blue", lw=2)
            ax.scatter(ep.path[0, a], ep.path[0, b], color="tab:green", s=40, zorder=5)
            ax.scatter(ep.goal[a], ep.goal[b], color="tab:red", marker="*", s=160, zorder=6)
            ax.add_patch(plt.Circle((ep.goal[a], ep.goal[b]), radius, color="tab:red", fill=False, ls="--", lw=1))
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=6)
            ax.set_title(f"seed {ep.seed}: {'success' if ep.success else 'failure'}, {name}", fontsize=8)
    handles = [Line2D([], [], color="tab:orange", lw=1.2, label="gripper"),
               Line2D([], [], color="tab:blue", lw=2, label="object"),
               Line2D([], [], color="tab:green", marker="o", ls="", label="object start"),
               Line2D([], [], color="tab:red", marker="*", ms=12, ls="", label="goal"),
               Line2D([], [], color="tab:red", ls="--", label=f"success radius {radius:g} {units}")]
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_manipulation_plans(states: np.ndarray, goals: np.ndarray, path: str | Path, title: str = "",
                            grip_dims=(0, 1, 2), object_dims=(3, 4, 5)) -> Path:
    """Planned gripper and object paths [B, H+1, Ds] from each start, top and side views, with the goals."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    for s, g in zip(states, goals):
        for ax, (a, b) in zip(axes, ((0, 1), (0, 2))):
            grip, obj = s[:, list(grip_dims)], s[:, list(object_dims)]
            ax.plot(grip[:, a], grip[:, b], color="tab:orange", lw=1, alpha=0.8)
            ax.plot(obj[:, a], obj[:, b], color="tab:blue", lw=1.5, alpha=0.8)
            ax.scatter(obj[0, a], obj[0, b], color="tab:green", s=25, zorder=5)
            ax.scatter(g[a], g[b], color="tab:red", marker="*", s=120, zorder=6)
    for ax, name in zip(axes, ("top view (x, y)", "side view (x, z)")):
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
    handles = [Line2D([], [], color="tab:orange", label="planned gripper"),
               Line2D([], [], color="tab:blue", lw=1.5, label="planned object"),
               Line2D([], [], color="tab:green", marker="o", ls="", label="object start"),
               Line2D([], [], color="tab:red", marker="*", ms=12, ls="", label="goal")]
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
