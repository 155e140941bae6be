"""Inference compute that pays? Success against network evaluations per decision: best-of-N vs Monte Carlo Tree
Diffusion (`search=mctd`) at equal compute, in closed loop with the DF MPC controller (replanning as tuned).

    python benchmarks/search.py threads=1                               # PointMaze Large, d4rl model, no map
    python benchmarks/search.py candidates=1,4,16 expansions=6,20,60 episodes=20 threads=1
    python benchmarks/search.py quick=true threads=1                    # smoke test, < 1 minute on 2 cores

Arms: `bon-N` = the shipped planner with `candidates=N` (N guided plans, the best by `rank` kept: the objective,
or `rank=value` the task's plan value, the one MCTD backs up);
`mctd-E` = `search=mctd, search_expansions=E` (the other search settings at their defaults unless given:
`block`, `jump`, `parallel`; `stop=budget` spends every tree's whole budget, arms `mctd-E-budget`). Everything else
is the checkpoint's tuned settings (`checkpoint=`, else the task's shipped `variant`), with the guidance objective
`objective` (default goal_distance: the straight line, no map).
Compute: network evaluations per decision = per plan made for one env, one plan through the network at one
scheduling row (the guidance backward rides along): best-of-N spends N x the schedule's moving rows; MCTD what
`plan.info["evaluations"]` counts (a block of rows per expansion plus its jumpy simulation; fewer when a plan solves
the task early). Both are measured by wrapping the planner's `plan_from` during the episodes, with seconds per
decision. Episodes: env seeds first_seed + s*episodes .. (held out: first_seed 100000 is never used by the datasets
or by any tuning; the search defaults and the value function's MAX_STEP were set on reset states of seeds 0..15).
Rows: one per arm and seed, to benchmarks/results/search.jsonl.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from dfplan.controllers import make_controller
from dfplan.df.sampler import schedule_levels
from dfplan.evaluation import run_episodes
from dfplan.run import reference_scores
from dfplan.search.mctd import evaluations

import common

DEFAULTS = {
    "env": "pointmaze-large",
    "checkpoint": None,  # a path or shipped name; default: the task's shipped `variant`
    "variant": "d4rl",
    "objective": "goal_distance",
    "goal": None,  # goal protocol; default: the task's
    "candidates": [1, 4, 16],  # best-of-N arms
    "rank": "objective",  # best-of-N keeps the plan this scores best: objective | value (MCTD's value)
    "expansions": [6, 20, 60],  # MCTD arms
    "block": 0,  # search_block; 0 = the default (rows split into 3 levels)
    "jump": 0,  # search_jump; 0 = the default
    "parallel": 0,  # search_parallel; 0 = the default
    "stop": "solved",  # search_stop: solved (MCTD's: a tree stops at its first solving plan) | budget
    "seeds": 1,
    "episodes": 20,
    "first_seed": 100000,
    "device": "cpu",
    "max_episode_steps": 0,  # 0 = the env's own
}
QUICK = {"env": "pointmaze-umaze", "candidates": [1, 4], "expansions": [6], "episodes": 2, "max_episode_steps": 60}


def arms(args) -> list[tuple[str, dict]]:
    suffix = "" if args.rank == "objective" else f"-by-{args.rank}"
    out = [(f"bon-{n}{suffix}", {"candidates": n, "rank": args.rank}) for n in args.candidates]
    search = {k: v for k, v in {"search_block": args.block, "search_jump": args.jump,
                                "search_parallel": args.parallel}.items() if v}
    stop = "" if args.stop == "solved" else f"-{args.stop}"
    return out + [(f"mctd-{e}{stop}", {"search": "mctd", "search_expansions": e, "search_stop": args.stop, **search})
                  for e in args.expansions]


class Meter:
    """Wraps a planner's `plan_from`: network evaluations and seconds per decision (one env's plan)."""

    def __init__(self, planner):
        self.planner, self.evals, self.seconds, self.decisions = planner, 0, 0.0, 0
        real = planner.plan_from

        def plan_from(z, obs, goal=None, horizon=None, objective=None, **kw):
            plan = real(z, obs, goal, horizon, objective, **kw)
            n = obs.shape[0]
            if "evaluations" in plan.info:
                self.evals += int(np.sum(plan.info["evaluations"]))
            else:
                cfg = planner.sampler
                levels = schedule_levels(planner.model, plan.info["tokens"].shape[1], cfg)
                self.evals += n * cfg.candidates * evaluations(levels, list(range(len(levels))))
            self.seconds += plan.info["seconds"]
            self.decisions += n
            return plan

        planner.plan_from = plan_from


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    task = common.task_of(args.env)
    args["goal"] = task.check_goal(args.goal)
    checkpoint = common.default_checkpoint(task, args.checkpoint, "df", args.variant)
    if checkpoint is None:
        raise common.ArgError(f"error: no DF checkpoint for {task.name}; pass checkpoint=PATH")
    command = common.print_command()

    results = common.Results("search", args, command)
    max_steps = args.max_episode_steps or None
    rows = []
    for name, overrides in arms(args):
        controller = make_controller("df", task, checkpoint, device=args.device, objective=args.objective,
                                     **overrides)
        meter = Meter(controller.planner)
        ref = reference_scores(task, controller)
        settings = common.controller_settings(controller)
        for seed in range(args.seeds):
            first = args.first_seed + seed * args.episodes
            meter.evals, meter.seconds, meter.decisions = 0, 0.0, 0
            t0 = time.perf_counter()
            res = run_episodes(controller, task, goal=args.goal, episodes=args.episodes, seed=first,
                               batch=args.episodes, progress=False, max_episode_steps=max_steps)
            s = res.summary(task, ref)
            row = results.add({"env": task.name, "goal": args.goal, "method": name, "seed": seed,
                               "first_env_seed": first, "checkpoint": str(checkpoint), "settings": settings,
                               "max_episode_steps": max_steps, **s,
                               "evaluations_per_decision": meter.evals / max(meter.decisions, 1),
                               "plan_seconds_per_decision": meter.seconds / max(meter.decisions, 1),
                               "decisions": meter.decisions, "wall_seconds": time.perf_counter() - t0,
                               "torch_threads": torch.get_num_threads(),
                               "episode_success": [e.success for e in res.episodes]}, args.device)
            rows.append(row)
            print(f"  {task.name} {name:9s} seed {seed}: success {s['success_rate']:.0%}  {s['score_name']} "
                  f"{s['score_mean']:6.1f}  evaluations/decision {row['evaluations_per_decision']:7.1f}  "
                  f"ms/decision {1000 * row['plan_seconds_per_decision']:6.2f}  ({row['wall_seconds']:.0f} s)",
                  flush=True)
    table = common.aggregate_table(rows, ["method"], [
        ("network evaluations / decision", common.col_mean_se("evaluations_per_decision", 1)),
        ("success", common.col_mean_se("success_rate", 0, pct=True)),
        (" / ".join(dict.fromkeys(r["score_name"] for r in rows)), common.col_mean_se("score_mean", 1)),
        ("plan ms / decision", lambda g: common.fmt_mean_se((1000 * r["plan_seconds_per_decision"] for r in g), 2)),
    ], key_headers=["method"])
    print()
    print(common.section(f"{task.name} ({args.goal} goal, {args.objective} guidance), {args.seeds} seed(s) x "
                         f"{args.episodes} held-out episodes from env seed {args.first_seed}, {args.device}, torch "
                         f"threads {torch.get_num_threads()}", table, command))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
