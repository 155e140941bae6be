"""The one run API behind `dfplan-eval`, `dfplan-demo`, `dfplan-plan` and the benchmarks.

    import dfplan
    run = dfplan.evaluate("pointmaze-umaze", episodes=20)          # the shipped DF checkpoint, tuned settings
    print(run.line)                                                # one human line
    run.summary["score_mean"], run.summary["success_rate"]

Each call loads its checkpoint once, validates every argument where it enters (a `UserError` naming the key),
and returns the summary the CLI prints as JSON.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfplan.checkpoint import load_checkpoint, resolve_checkpoint
from dfplan.controllers import make_controller
from dfplan.df.planner import load_df_planner
from dfplan.errors import UserError, check_int
from dfplan.evaluation.rollouts import EvalResult, run_episodes
from dfplan.evaluation.video import check_video_path, record_video
from dfplan.tasks import Task, get_task
from dfplan.types import Controller


@dataclass
class Run:
    """One closed-loop evaluation (`evaluate`): its summary, its episodes and what ran them."""

    summary: dict  # what dfplan-eval prints as JSON
    line: str  # one human line
    result: EvalResult  # per-episode records
    task: Task
    controller: Controller


def resolve_task(env: str | None, checkpoint=None, dataset_id: str | None = None):
    """The task to run: `env` by name (named tasks, a checkpoint's own custom maze, a dataset's), else the task the
    checkpoint was made for, else PointMaze U-Maze."""
    spec = None
    if checkpoint is not None:
        ckpt = load_checkpoint(resolve_checkpoint(checkpoint))  # small: only its task is read here
        spec = ckpt.get("task")
        env = env or (spec or {}).get("name") or ckpt.get("env")
    return get_task(env or "pointmaze-umaze", spec=spec, dataset_id=dataset_id)


def check_task_match(task: Task, controller: Controller, allow_task_mismatch: bool) -> None:
    """Refuse a checkpoint made for another task (a Medium model scored against U-Maze's reference scores)."""
    made_for = controller.meta.get("env")
    if made_for and made_for != task.name and not allow_task_mismatch:
        raise UserError(f"the checkpoint {controller.checkpoint_path} was trained for env={made_for}, not {task.name}; "
                        f"pass env={made_for} (or allow_task_mismatch=true if you mean it)")


def reference_scores(task: Task, controller: Controller):
    """(min, max) reference returns: the checkpoint's (from its dataset), else those of the task's shipped one."""
    if controller.meta.get("ref_scores"):
        return tuple(controller.meta["ref_scores"])
    try:
        ref = load_checkpoint(task.shipped_checkpoint()).get("ref_scores")
        return tuple(ref) if ref and None not in ref else None
    except UserError:
        return None


def evaluate(env: str | None = None, planner: str = "df", checkpoint=None, variant: str | None = None,
             episodes: int = 10, goal: str | None = None, seed: int = 0, batch: int = 50, device: str = "auto",
             max_episode_steps: int | None = None, plot: str | None = None, video: str | None = None,
             progress: bool = True, allow_task_mismatch: bool = False, replan_every: int | None = None,
             video_source: str = "drawn", **settings) -> Run:
    """Evaluate a planner in closed loop on `episodes` episodes (env seeds seed, seed+1, ...).

    env: task name (None = the checkpoint's task); planner: df | diffuser | diffuser-replan | diffuser-actions |
    expert; checkpoint: path or shipped name (None = the task's shipped one, `variant` picks which DF one);
    video: a .gif or .mp4 of the first episode, drawn from the rollout (`video_source="drawn"`, no OpenGL needed) or
    rendered by MuJoCo (`video_source="render"`);
    goal: the task's goal mode (None = the one the DF checkpoint stores, else the task's default);
    `settings`: DF settings overriding the checkpoint's tuned values (`dfplan.settings`)."""
    episodes = check_int("episodes", episodes, 1)
    batch = check_int("batch", batch, 1)
    seed = check_int("seed", seed, 0)
    max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1, allow_none=True)
    task = resolve_task(env, checkpoint)
    if goal is not None:
        task.check_goal(goal)
        if planner == "df":  # the DF controller reads a plain env's goal in this mode too
            settings["goal"] = goal
    controller = make_controller(planner, task, checkpoint, variant=variant, device=device,
                                 replan_every=replan_every, **settings)
    goal = task.check_goal(goal if goal is not None else controller.goal)  # a DF checkpoint stores its goal mode
    check_task_match(task, controller, allow_task_mismatch)
    ref = reference_scores(task, controller)
    for path in (plot, video):
        check_writable(path)
    if video:
        check_video_path(video, video_source)
    result = run_episodes(controller, task, goal=goal, episodes=episodes, seed=seed, batch=batch,
                          keep_plans=12 if plot else 0, progress=progress, max_episode_steps=max_episode_steps)
    summary = {"env": task.name, "planner": planner, "goal": goal, "seed": seed,
               "checkpoint": controller.checkpoint_path,
               **result.summary(task, ref), "settings": _settings_of(controller), "commit": git_commit()}
    if plot:
        task.plot_episodes(result.episodes, plot, title=f"{planner} on {task.name} ({goal} goal)", ref_scores=ref)
    if video:
        record_video(controller, task, goal, seed, video, source=video_source,
                     title=f"{planner} on {task.name}, seed {seed}")
    return Run(summary, task.describe(summary), result, task, controller)


def plan_once(env: str | None = None, checkpoint=None, variant: str | None = None, starts: int = 6,
              goal: str | None = None, seed: int = 0, horizon: int | None = None, device: str = "auto",
              out: str | None = None, **settings) -> dict:
    """Plan once (open loop) from `starts` reset states of the task; stats of the plans, and a picture at `out`."""
    starts = check_int("starts", starts, 1)
    seed = check_int("seed", seed, 0)
    task = resolve_task(env, checkpoint)
    if goal is not None:
        task.check_goal(goal)
    check_writable(out)
    path = checkpoint if checkpoint is not None else task.shipped_checkpoint("df", variant)
    planner = load_df_planner(path, device=device, **({"horizon": horizon} if horizon is not None else {}), **settings)
    goal = task.check_goal(goal if goal is not None else planner.settings.controller.goal)
    env_ = task.make_env(goal=goal)
    resets = [env_.reset(seed=seed + i)[0] for i in range(starts)]
    obs = np.stack([o["observation"] for o in resets]).astype(np.float32)
    goals = np.stack([o["desired_goal"] for o in resets]).astype(np.float32)
    gen = torch.Generator(device=planner.device).manual_seed(seed)
    plan = planner.plan(torch.from_numpy(obs), torch.from_numpy(goals), generator=gen)
    states = plan.states.cpu().numpy()
    executed = execute_open_loop(task, goal, [seed + i for i in range(starts)], plan.actions.cpu().numpy())
    stats = {"env": task.name, "plans": starts, "steps": plan.horizon, "ms": 1000 * plan.info["seconds"],
             "objective": planner.settings.controller.objective or task.objectives[0], **task.plan_stats(states, goals),
             "dynamics_error": dynamics_error(states, executed, task.goal_dims)}
    if out:
        task.plot_plans(states, goals, out, title=f"{task.name}: one open-loop plan of {plan.horizon} steps per start\n"
                                                  f"({stats['objective']} guidance, {stats['ms']:.0f} ms), not the "
                                                  f"controller's replanned route")
    return stats


def execute_open_loop(task, goal: str, seeds: list[int], actions: np.ndarray) -> np.ndarray:
    """The observations [B, H+1, Ds] the real env gives when each plan's own actions [B, H, Da] are executed from the
    reset state it was planned from (env seed `seeds[i]`), clipped to the action box as a controller would."""
    out = []
    for s, acts in zip(seeds, actions):
        env = task.make_env(goal=goal)
        obs, _ = env.reset(seed=s)
        rows = [obs["observation"]]
        for a in np.clip(acts, env.action_space.low, env.action_space.high):
            obs, *_ = env.step(a)
            rows.append(obs["observation"])
        env.close()
        out.append(np.stack(rows))
    return np.stack(out)


def dynamics_error(planned: np.ndarray, executed: np.ndarray, dims, steps: int = 32) -> float:
    """Mean distance, over the first `steps` env steps, between planned and really reached positions (`dims`: the
    state dims the goal refers to). Small when the model has learned the env's physics."""
    n = min(steps, planned.shape[1] - 1, executed.shape[1] - 1)
    d = planned[:, 1:n + 1, list(dims)] - executed[:, 1:n + 1, list(dims)]
    return float(np.linalg.norm(d, axis=-1).mean())


def _settings_of(controller: Controller) -> dict:
    """The settings summary of `dfplan-eval`: a DF controller's sampler and controller settings in one flat dict;
    a Diffuser controller's mode, replanning period and execution."""
    record = controller.settings_record()
    if "sampler" in record:
        return {**record["sampler"], **record["controller"]}
    return {k: record[k] for k in ("mode", "replan_every", "execution", "snap_radius") if k in record}


def check_writable(path) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: the folder {parent} is not writable")


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
