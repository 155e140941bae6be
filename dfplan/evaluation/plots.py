"""Pictures of mazes, plans and executed paths, and animations of one episode (matplotlib, headless, no OpenGL).
Tasks pick the drawing they need. Manipulation pictures are in metres, with equal scales on both axes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

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
    handles = _legend_handles("planned" if any(ep.plans for ep in shown) else None, radius)
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
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


def metres_as_given(xyz: np.ndarray) -> np.ndarray:
    """Positions already in metres (Fetch): unchanged."""
    return np.asarray(xyz)


VIEWS = ((0, 1, "top view (x, y)"), (0, 2, "side view (x, z)"))


def _metric_axes(ax, a: int, b: int, adjustable: str = "datalim") -> None:
    """Equal scales on both axes, labelled in metres (adjustable="box": the limits set stay, the panel's shape
    changes)."""
    ax.set_aspect("equal", adjustable=adjustable)
    ax.set_xlabel(f"{'xyz'[a]} (m)", fontsize=7)
    ax.set_ylabel(f"{'xyz'[b]} (m)", fontsize=7)
    ax.tick_params(labelsize=6)


OBJECT_COLORS = ("tab:blue", "tab:purple", "tab:brown")  # each object's path, in the order of the achieved goal


def plot_manipulation_episodes(episodes, path: str | Path, title: str = "", grip_dims=(0, 1, 2), radius: float = 0.05,
                               to_metres: Callable = metres_as_given, max_episodes: int = 6) -> Path:
    """Per episode a top view (x, y) and a side view (x, z), in metres: the gripper's path and each object's (the
    achieved goal holds 3 dims per object) against its goal. `to_metres`: the env's positions [..., 3] -> metres;
    `radius`: the success radius in metres."""
    shown = list(episodes)[:max_episodes]
    fig, axes = plt.subplots(2, len(shown), figsize=(2.8 * len(shown), 5.6), squeeze=False, layout="constrained")
    for k, ep in enumerate(shown):
        objects = [(to_metres(ep.path[:, j:j + 3]), to_metres(ep.goal[j:j + 3])) for j in range(0, ep.path.shape[1], 3)]
        for row, (a, b, name) in enumerate(VIEWS):
            ax = axes[row, k]
            if ep.states is not None:
                grip = to_metres(ep.states[:, list(grip_dims)])
                ax.plot(grip[:, a], grip[:, b], color="tab:orange", lw=1.2)
            for j, (obj, goal) in enumerate(objects):
                ax.plot(obj[:, a], obj[:, b], color=OBJECT_COLORS[j % len(OBJECT_COLORS)], lw=2)
                ax.scatter(obj[0, a], obj[0, b], color="tab:green", s=40, zorder=5)
                ax.scatter(goal[a], goal[b], color="tab:red", marker="*", s=160, zorder=6)
                ax.add_patch(plt.Circle((goal[a], goal[b]), radius, color="tab:red", fill=False, ls="--", lw=1))
            _metric_axes(ax, a, b)
            ax.set_title(f"seed {ep.seed}: {'success' if ep.success else 'failure'}, {name}", fontsize=8)
    n = max(ep.path.shape[1] // 3 for ep in shown)
    handles = [Line2D([], [], color="tab:orange", lw=1.2, label="gripper"),
               *[Line2D([], [], color=c, lw=2, label="object" if n == 1 else f"object {j + 1}")
                 for j, c in enumerate(OBJECT_COLORS[:n])],
               Line2D([], [], color="tab:green", marker="o", ls="", label="object start"),
               Line2D([], [], color="tab:red", marker="*", ms=12, ls="", label="goal"),
               Line2D([], [], color="tab:red", ls="--", label=f"success radius {radius:g} m")]
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_manipulation_plans(states: np.ndarray, goals: np.ndarray, path: str | Path, title: str = "",
                            grip_dims=(0, 1, 2), object_dims=(3, 4, 5), to_metres: Callable = metres_as_given) -> Path:
    """Planned gripper and object paths [B, H+1, Ds] from each start, top and side views in metres, with the goals."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    for s, g in zip(states, goals):
        grip, obj, g = to_metres(s[:, list(grip_dims)]), to_metres(s[:, list(object_dims)]), to_metres(g[:3])
        for ax, (a, b, _) in zip(axes, VIEWS):
            ax.plot(grip[:, a], grip[:, b], color="tab:orange", lw=1, alpha=0.8)
            ax.plot(obj[:, a], obj[:, b], color="tab:blue", lw=1.5, alpha=0.8)
            ax.scatter(obj[0, a], obj[0, b], color="tab:green", s=25, zorder=5)
            ax.scatter(g[a], g[b], color="tab:red", marker="*", s=120, zorder=6)
    for ax, (a, b, name) in zip(axes, VIEWS):
        ax.set_title(name, fontsize=9)
        _metric_axes(ax, a, b)
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


# --- animations of one episode (what `dfplan-eval video=` draws without OpenGL) -----------------------------------
FRAME_INCHES, FRAME_DPI = (6.4, 4.8), 100  # 640 x 480 pixels: multiples of 16, as MP4 encoders want


def _grab(fig, update: Callable[[int], None], steps) -> Iterator[np.ndarray]:
    """RGB frames [H, W, 3] of `fig` after `update(t)` for each t of `steps`; closes the figure at the end."""
    try:
        for t in steps:
            update(t)
            fig.canvas.draw()
            yield np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def _limits(points: np.ndarray, margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Fixed axis limits around finite points [N, 2] (the view does not jump while the episode plays)."""
    points = points[np.isfinite(points).all(-1)]
    low, high = points.min(0) - margin, points.max(0) + margin
    return (low[0], high[0]), (low[1], high[1])


def animate_maze(layout, path: np.ndarray, goals: np.ndarray, plans: list, steps, title: str = "",
                 radius: float = 0.45) -> Iterator[np.ndarray]:
    """Top-down frames of one episode: the maze (`layout`; None: no walls drawn), the point's path so far
    (`path` [T+1, 2]), the plan being followed (`plans[t]`: planned xy [H+1, 2] or None) and the goal (`goals`
    [T+1, 2]), one frame per step in `steps`."""
    fig, ax = plt.subplots(figsize=FRAME_INCHES, dpi=FRAME_DPI, layout="constrained")
    if layout is not None:
        draw_maze(ax, layout)
    else:
        finite_plans = [p for p in plans if p is not None]
        xlim, ylim = _limits(np.concatenate([path, goals, *finite_plans]), margin=2 * radius)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal")
    ax.scatter(*path[0], color="tab:green", s=50, zorder=5)
    planned, = ax.plot([], [], color="tab:orange", lw=1.5, label="current plan")
    executed, = ax.plot([], [], color="tab:blue", lw=2, label="executed")
    point = ax.scatter(*path[0], color="tab:blue", s=40, zorder=6)
    goal = ax.scatter(*goals[0], color="tab:red", marker="*", s=200, zorder=6, label="goal")
    ring = ax.add_patch(plt.Circle(goals[0], radius, color="tab:red", fill=False, ls="--", lw=1))
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    last = len(path) - 1

    def update(t: int) -> None:
        executed.set_data(path[:t + 1, 0], path[:t + 1, 1])
        point.set_offsets(path[t:t + 1])
        plan = plans[t]
        planned.set_data(*(([], []) if plan is None else (plan[:, 0], plan[:, 1])))
        goal.set_offsets(goals[t:t + 1])
        ring.center = tuple(goals[t])
        ax.set_title(f"{title}step {t} of {last}", fontsize=9)

    return _grab(fig, update, steps)


def animate_manipulation(grip: np.ndarray, objects: np.ndarray, goals: np.ndarray, plans: list, steps,
                         title: str = "", radius: float = 0.05) -> Iterator[np.ndarray]:
    """Frames of one manipulation episode in metres, a top view (x, y) and a side view (x, z) with equal scales: the
    gripper's path (`grip` [T+1, 3]) and each object's (`objects` [T+1, n, 3]) so far, the plan being followed
    (`plans[t]`: (planned gripper [H+1, 3], planned objects [H+1, n, 3]) or None) and the goals (`goals`
    [T+1, n, 3]), one frame per step in `steps`."""
    fig, axes = plt.subplots(1, 2, figsize=FRAME_INCHES, dpi=FRAME_DPI, layout="constrained")
    everything = np.concatenate([grip, objects.reshape(-1, 3), goals.reshape(-1, 3)])
    n = objects.shape[1]
    artists = []
    for ax, (a, b, name) in zip(axes, VIEWS):
        xlim, ylim = _limits(everything[:, [a, b]], margin=0.05)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        _metric_axes(ax, a, b, adjustable="box")
        ax.set_title(name, fontsize=8)
        art = {"grip": ax.plot([], [], color="tab:orange", lw=1.2)[0],
               "grip_plan": ax.plot([], [], color="tab:orange", lw=1, ls=":")[0],
               "objects": [ax.plot([], [], color="tab:blue", lw=2)[0] for _ in range(n)],
               "object_plans": [ax.plot([], [], color="tab:blue", lw=1, ls=":")[0] for _ in range(n)],
               "goals": ax.scatter(goals[0, :, a], goals[0, :, b], color="tab:red", marker="*", s=120, zorder=6),
               "objects_now": ax.scatter(objects[0, :, a], objects[0, :, b], color="tab:blue", s=30, zorder=7),
               "grip_now": ax.scatter(grip[0, a], grip[0, b], color="tab:orange", s=20, zorder=7)}
        artists.append((a, b, art))
    handles = [Line2D([], [], color="tab:orange", lw=1.2, label="gripper"),
               Line2D([], [], color="tab:blue", lw=2, label="object" if n == 1 else "objects"),
               Line2D([], [], color="0.3", lw=1, ls=":", label="current plan"),
               Line2D([], [], color="tab:red", marker="*", ms=10, ls="", label=f"goal (radius {radius:g} m)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    last = len(grip) - 1

    def update(t: int) -> None:
        plan = plans[t]
        for a, b, art in artists:
            art["grip"].set_data(grip[:t + 1, a], grip[:t + 1, b])
            art["grip_plan"].set_data(*(([], []) if plan is None else (plan[0][:, a], plan[0][:, b])))
            for c in range(n):
                art["objects"][c].set_data(objects[:t + 1, c, a], objects[:t + 1, c, b])
                art["object_plans"][c].set_data(*(([], []) if plan is None else (plan[1][:, c, a], plan[1][:, c, b])))
            art["goals"].set_offsets(goals[t][:, [a, b]])
            art["objects_now"].set_offsets(objects[t][:, [a, b]])
            art["grip_now"].set_offsets(grip[t:t + 1, [a, b]])
        fig.suptitle(f"{title}step {t} of {last}", fontsize=9)

    return _grab(fig, update, steps)
