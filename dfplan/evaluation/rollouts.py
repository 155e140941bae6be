"""Run a controller in many PointMaze envs at once (lockstep: every env has the same time limit and no
termination) and score it: D4RL-style normalized return, success, time to reach the goal."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from dfplan.envs import make_env

GOAL_RADIUS = 0.45


@dataclass
class EpisodeResult:
    seed: int
    ret: float
    success: bool
    time_to_goal: int | None  # first step within GOAL_RADIUS of the goal
    path: np.ndarray  # executed xy [T+1, 2]
    goal: np.ndarray
    plans: list = field(default_factory=list)  # planned states [H+1, Ds] made along the way


@dataclass
class EvalResult:
    episodes: list[EpisodeResult]
    seconds: float
    ref_min: float | None
    ref_max: float | None
    failures: int = 0

    def normalized(self) -> np.ndarray:
        if self.ref_min is None or self.ref_max is None:
            raise ValueError("no reference scores: pass ref_min/ref_max (the checkpoint or dataset holds them)")
        return 100.0 * (np.array([e.ret for e in self.episodes]) - self.ref_min) / (self.ref_max - self.ref_min)

    def summary(self) -> dict:
        rets = np.array([e.ret for e in self.episodes])
        ttg = [e.time_to_goal for e in self.episodes if e.time_to_goal is not None]
        out = {"episodes": len(rets), "return_mean": float(rets.mean()), "return_se": _se(rets),
               "success_rate": float(np.mean([e.success for e in self.episodes])),
               "mean_time_to_goal": float(np.mean(ttg)) if ttg else None, "failures": self.failures,
               "seconds": round(self.seconds, 2), "episodes_per_minute": round(60 * len(rets) / self.seconds, 1)}
        if self.ref_min is not None:
            norm = self.normalized()
            out.update(normalized_score_mean=float(norm.mean()), normalized_score_se=_se(norm))
        return out


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def evaluate(controller, env_name="pointmaze-umaze", goal: str = "fixed", episodes: int = 10, seed: int = 0,
             batch: int = 50, ref_scores: tuple[float, float] | None = None, keep_plans: int = 0,
             progress: bool = True, max_episode_steps: int | None = None) -> EvalResult:
    """Evaluate `controller` (reset(seed), act(batched dict obs)) on `episodes` episodes, `batch` envs at a time.

    Episode i uses env seed `seed + i`. `keep_plans` keeps the plans made in the first few episodes (for plots).
    """
    t0 = time.perf_counter()
    results: list[EpisodeResult] = []
    failures_before = getattr(controller, "failures", 0)
    bar = tqdm(total=episodes, desc=f"eval {env_name}/{goal}", unit="ep", disable=not progress)
    for first in range(0, episodes, batch):
        n = min(batch, episodes - first)
        envs = [make_env(env_name, goal=goal, max_episode_steps=max_episode_steps) for _ in range(n)]
        seeds = [seed + first + i for i in range(n)]
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
        horizon = envs[0].spec.max_episode_steps
        if hasattr(controller, "max_episode_steps"):
            controller.max_episode_steps = horizon
        controller.reset(seed=seed + first)
        rets, first_hit = np.zeros(n), np.full(n, -1)
        paths = [[o["achieved_goal"].copy()] for o in obs]
        goals = [o["desired_goal"].copy() for o in obs]
        for t in range(horizon):
            batch_obs = {k: np.stack([o[k] for o in obs]) for k in ("observation", "desired_goal", "achieved_goal")}
            actions = controller.act(batch_obs)
            for i, env in enumerate(envs):
                obs[i], reward, _, _, _ = env.step(actions[i])
                rets[i] += reward
                paths[i].append(obs[i]["achieved_goal"].copy())
                if first_hit[i] < 0 and np.linalg.norm(obs[i]["achieved_goal"] - goals[i]) <= GOAL_RADIUS:
                    first_hit[i] = t + 1
        history = getattr(controller, "history", [])
        for i in range(n):
            plans = [h[i] for h in history] if first + i < keep_plans else []
            results.append(EpisodeResult(seeds[i], float(rets[i]), bool(first_hit[i] >= 0),
                                         int(first_hit[i]) if first_hit[i] >= 0 else None,
                                         np.array(paths[i]), goals[i], plans))
        for env in envs:
            env.close()
        bar.update(n)
    bar.close()
    ref = ref_scores or (None, None)
    return EvalResult(results, time.perf_counter() - t0, ref[0], ref[1],
                      getattr(controller, "failures", 0) - failures_before)
