"""OGBench PointMaze navigate benchmark (medium, large, giant; no map knowledge): task x method x seed through
`dfplan.evaluation.evaluate`, on held-out episodes.

    python benchmarks/navigate.py                                          # every maze, the default methods, 3 x 50
    python benchmarks/navigate.py envs=ogbench-pointmaze-giant methods=df,df-actions,expert seeds=1 episodes=10
    python benchmarks/navigate.py checkpoint_ogbench-pointmaze-giant=runs/nav-giant/final.pt
    python benchmarks/navigate.py quick=true threads=1                     # smoke test

Methods (controllers built by `dfplan.controllers.make_controller`, as `dfplan-eval` does; guidance is the straight
line to the goal, the task's only objective):
  df             the DF MPC controller with the checkpoint's tuned settings (its stored execution)
  df-no-revisit  df without the revisit cost (`revisit_cost=0`: plans never turn from where the point has been)
  df-no-blocked  df without the blocked cost (`blocked_cost=0`: plans never turn from walls the point pressed against)
  df-actions     DF executing its own planned actions
  df-track       DF's planned positions tracked by the point's position controller (execution=track)
  df-best8       df-track, the best of 8 guided plans by the objective (candidates=8)
  df-mctd        df with tree search instead of best-of-N: MCTD with 4 expansions (`search=mctd search_expansions=4
                 search_jump=1`: 20 network evaluations per decision, as the best of 4)
  diffuser       Diffuser, plan once, its planned positions tracked by the point's position controller
  diffuser-replan   the same, replanning every 100 steps
  diffuser-actions  Diffuser executing its own diffused actions
  expert         the data's expert without noise (OGBench's BFS oracle; it knows the map): the ceiling
  random         uniform random actions: the floor
Checkpoints: `checkpoint_<env>=`, `diffuser_checkpoint_<env>=` (paths or shipped names), else the shipped
`<env>-default.pt` / `-diffuser.pt`; a method without one is skipped with a note.
Seed s runs env seeds `first_seed + s*episodes ...` (default first_seed 100000; the datasets use seeds 0..999 and
tuning used 5000..); env seed s plays evaluation task 1 + s % 5, so `episodes` a multiple of 5 covers the five tasks
equally. OGBench's start and goal jitter is kept, drawn from the env seed.
Table: success rate (%, within 1.0 of the goal at any step of 1,000; also per task) as mean ± s.e. over seeds,
planning ms per decision, planning seconds per episode, episodes per minute.
"""

from __future__ import annotations

import sys

from dfplan.controllers import make_controller

import common

ENVS = ["ogbench-pointmaze-medium", "ogbench-pointmaze-large", "ogbench-pointmaze-giant"]
# method -> (make_controller's planner, its keywords, the checkpoints it needs)
METHODS = {
    "df": ("df", {}, ("df",)),
    "df-no-revisit": ("df", {"revisit_cost": 0.0}, ("df",)),
    "df-no-blocked": ("df", {"blocked_cost": 0.0}, ("df",)),
    "df-actions": ("df", {"execution": "actions"}, ("df",)),
    "df-track": ("df", {"execution": "track"}, ("df",)),
    "df-best8": ("df", {"execution": "track", "candidates": 8}, ("df",)),
    "df-mctd": ("df", {"search": "mctd", "search_expansions": 4, "search_jump": 1}, ("df",)),
    "diffuser": ("diffuser", {}, ("diffuser",)),
    "diffuser-replan": ("diffuser-replan", {"replan_every": 100}, ("diffuser",)),
    "diffuser-actions": ("diffuser-actions", {}, ("diffuser",)),
    "expert": ("expert", {}, ()),
    "random": ("random", {}, ()),
}
DEFAULTS = {"envs": ENVS, "methods": ["df", "df-actions", "df-track", "diffuser", "expert", "random"],
            "seeds": 3, "episodes": 50, "first_seed": 100000, "batch": 0, "device": "auto", "render": None}
QUICK = {"envs": ["ogbench-pointmaze-medium"], "methods": ["df", "expert", "random"], "seeds": 1, "episodes": 5}
PREFIXES = ("checkpoint_", "diffuser_checkpoint_")
KIND = {"checkpoint_": "df", "diffuser_checkpoint_": "diffuser"}


def build(method: str, task, checkpoints: dict, device: str):
    planner, kwargs, needs = METHODS[method]
    return make_controller(planner, task, checkpoints[needs[0]] if needs else None, device=device, **kwargs)


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__, prefixes=PREFIXES)
    _, rows, command = common.run_methods("navigate", args, METHODS, PREFIXES, KIND, build)
    per_task = [(f"task {k}", common.col_mean_se(f"task{k}_success")) for k in range(1, 6)]
    table = common.aggregate_table(rows, ["env", "method"], [("success %", common.col_mean_se("score_mean")),
                                                              *per_task, *common.TIMING_COLUMNS])
    print(f"\nOGBench PointMaze navigate: success over {args.seeds} seeds x {args.episodes} held-out episodes "
          f"(mean ± s.e. over seeds)\n{table}")
    if args.render:
        common.write_markdown(args.render, [common.section("OGBench PointMaze navigate", table, command)], command,
                              "OGBench PointMaze navigate")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
