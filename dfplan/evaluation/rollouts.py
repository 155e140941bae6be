"""Run a controller in many envs of a task at once (lockstep: every env has the same time limit) and score it.

The loop is task-agnostic: the task makes the envs, says when a step reached the goal and how episodes are
scored (`dfplan.tasks.Task.summarize`); this module adds returns, success, time to goal and throughput.
"""

from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from dfplan.types import EpisodeResult, as_controller, standard_error


@dataclass
class EvalResult:
    episodes: list[EpisodeResult]
    seconds: float
    failures: int = 0

    def summary(self, task, ref_scores=None) -> dict:
        rets = np.array([e.ret for e in self.episodes])
        ttg = [e.time_to_goal for e in self.episodes if e.time_to_goal is not None]
        return {"episodes": len(rets), "return_mean": float(rets.mean()), "return_se": standard_error(rets),
                "success_rate": float(np.mean([e.success for e in self.episodes])),
                "mean_time_to_goal": float(np.mean(ttg)) if ttg else None, "failures": self.failures,
                "seconds": round(self.seconds, 2), "episodes_per_minute": round(60 * len(rets) / self.seconds, 1),
                **task.summarize(self.episodes, ref_scores)}


def run_episodes(controller, task, goal: str | None = None, episodes: int = 10, seed: int = 0, batch: int = 50,
                 keep_plans: int = 0, progress: bool = True, max_episode_steps: int | None = None) -> EvalResult:
    """Run `controller` (a `dfplan.types.Controller`, or any object with reset(seed) and act(batched dict obs)) on
    `episodes` episodes of `task`, `batch` envs at a time, and score them. Episode i uses env seed `seed + i`.
    `keep_plans` keeps the plans and states of the first few episodes (for pictures). `goal`: the task's goal mode;
    None = the controller's (`Controller.goal`: a DF checkpoint stores its own), else the task's default."""
    controller = as_controller(controller)
    goal = task.check_goal(goal if goal is not None else controller.goal)
    t0 = time.perf_counter()
    results: list[EpisodeResult] = []
    failures_before = controller.failures
    bar = tqdm(total=episodes, desc=f"eval {task.name}/{goal}", unit="ep", disable=not progress)
    for first in range(0, episodes, batch):
        n = min(batch, episodes - first)
        envs = [task.make_env(goal=goal, max_episode_steps=max_episode_steps) for _ in range(n)]
        seeds = [seed + first + i for i in range(n)]
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
        horizon = envs[0].spec.max_episode_steps
        controller.max_episode_steps = horizon
        controller.reset(seed=seed + first)
        rets, first_hit, last_ok = np.zeros(n), np.full(n, -1), np.zeros(n, dtype=bool)
        paths = [[o["achieved_goal"].copy()] for o in obs]
        keep = [first + i < keep_plans for i in range(n)]  # episodes whose states and plans are kept for pictures
        states = [[o["observation"].copy()] if k else None for o, k in zip(obs, keep)]
        goals = [o["desired_goal"].copy() for o in obs]
        for t in range(horizon):
            batch_obs = {k: np.stack([o[k] for o in obs]) for k in ("observation", "desired_goal", "achieved_goal")}
            actions = controller.act(batch_obs)
            for i, env in enumerate(envs):
                obs[i], reward, _, _, info = env.step(actions[i])
                rets[i] += reward
                paths[i].append(obs[i]["achieved_goal"].copy())
                if keep[i]:
                    states[i].append(obs[i]["observation"].copy())
                last_ok[i] = task.step_success(obs[i], info)
                if first_hit[i] < 0 and last_ok[i]:
                    first_hit[i] = t + 1
        history = controller.history
        for i in range(n):
            success = bool(last_ok[i]) if task.success_rule == "end" else bool(first_hit[i] >= 0)
            results.append(EpisodeResult(seeds[i], float(rets[i]), success,
                                         int(first_hit[i]) if first_hit[i] >= 0 else None, np.array(paths[i]),
                                         goals[i], [h[i] for h in history] if keep[i] else [],
                                         np.array(states[i]) if keep[i] else None, bool(last_ok[i])))
        for env in envs:
            env.close()
        release_freed_memory()
        bar.update(n)
    bar.close()
    return EvalResult(results, time.perf_counter() - t0, controller.failures - failures_before)


def release_freed_memory() -> None:
    """Hand the heap pages of closed envs back to the OS. A MuJoCo env is large (an OGBench cube env ~130 MB) and
    glibc keeps the freed pages, so a process that evaluates batch after batch grows by GBs. Other C libraries have
    no `malloc_trim` and need none of this."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
