"""Manipulation benchmark: Fetch and OGBench cube tasks x method x seed through `dfplan.evaluation.evaluate`,
on held-out episodes.

    python benchmarks/manipulation.py                                      # Fetch tasks, every method, 3 x 100
    python benchmarks/manipulation.py envs=ogbench-cube-single,ogbench-cube-double episodes=50
    python benchmarks/manipulation.py envs=fetch-push methods=df,expert seeds=1 episodes=20
    python benchmarks/manipulation.py checkpoint_fetch-push=runs/push-df/final.pt bc_checkpoint_fetch-push=PATH
    python benchmarks/manipulation.py quick=true threads=1                 # smoke test

Methods (controllers built by `dfplan.controllers.make_controller`, as `dfplan-eval` does):
  df             the DF MPC controller with the checkpoint's tuned settings (its stored execution)
  df-actions     DF executing its own planned actions, replanning every 4 steps (their tuned interval)
  df-lowlevel    DF's planned state 10 steps ahead handed to the learned goal-conditioned low-level policy
                 (execution=lowlevel; the checkpoint's other settings)
  df-unguided    guidance_scale=0: the goal enters only through the state (goal-conditioned DF, no guidance)
  df-object      objective=object_to_goal        df-reach   objective=reach_then_carry  (Fetch)
  df-unaligned   grasp_align=0: the low-level policy handed the plan's target as planned, without the task's grasp
                 rules (OGBench cubes, whose checkpoints store them: face the cube's sides, reopen an empty grasp)
  df-subgoal-layer  OGBench: our one-cube-at-a-time subgoal layer (goal=fixed) instead of the whole goal that `df`
                 reads on the cubes (the shipped checkpoints store goal=whole, the papers' protocol, and
                 object_choice=search: one plan per unplaced cube, the one the task's plan value ranks best followed
                 until placed; a target another cube sits on is cleared first, to a free spot when every target is
                 taken). Rows named df-whole-goal-search, made before 0.18, ran what `df` runs now.
  df-whole-goal  OGBench: the whole goal shown to the model as it is (goal=whole, object_choice=given)
  df-whole-goal-random  the whole goal, a random one of the moves `df` chooses among (object_choice=random: what
                 the search adds)
  diffuser       Diffuser, plan once, its planned gripper positions tracked by the task's tracker
  diffuser-lowlevel  Diffuser, plan once, its plan reached by the low-level policy (10 steps ahead)
  diffuser-replan-lowlevel  the same, replanning every 32 steps
  diffuser-tuned     Diffuser as `dfplan-eval planner=diffuser` runs it: its checkpoint's tuned execution
                     (cubes / Fetch: replanning every 4 / 32 steps, reached by the low-level policy)
  diffuser-actions   Diffuser executing its own diffused actions (replanning when they run out)
  bc             goal-conditioned behaviour cloning (MLP), same data
  expert         the scripted expert / OGBench's oracle that made the data (noise-free): the ceiling
  random         uniform random actions: the floor
Checkpoints: `checkpoint_<env>=`, `diffuser_checkpoint_<env>=`, `bc_checkpoint_<env>=`, `lowlevel_checkpoint_<env>=`
(paths or shipped names), else the shipped `<env>-default.pt` / `-diffuser.pt` / `-bc.pt` / `-lowlevel.pt`; a method
without one is skipped with a note.
Seed s runs env seeds `first_seed + s*episodes ...` (default first_seed 100000: never used by the datasets, which use
seeds 123.. (Fetch) and 0.. (OGBench), nor by tuning, which used seeds 5000..); the same episodes for every method.
OGBench env seed s plays evaluation task 1 + s % 5, so `episodes` a multiple of 5 covers the five tasks equally.
Table: success rate (%, Fetch: object within 0.05 m of the goal at the last step; OGBench: every cube within 0.04 m
of its target at some step, where OGBench ends the episode, also per task and, "at end", still at the last step) as
mean ± s.e. over seeds, planning ms per decision (plans' seconds / env steps), planning seconds per episode, episodes
per minute.
"""

from __future__ import annotations

import sys

from dfplan.controllers import make_controller

import common

ENVS = ["fetch-push", "fetch-pickandplace"]
LOWLEVEL = {"execution": "lowlevel"}
OWN_ACTIONS_REPLAN = 4  # env steps between plans when DF executes its own actions (tuned on every manipulation task)
# method -> (make_controller's planner, its keywords, the checkpoints it needs)
METHODS = {
    "df": ("df", {}, ("df",)),
    "df-actions": ("df", {"execution": "actions", "replan_every": OWN_ACTIONS_REPLAN}, ("df",)),
    "df-lowlevel": ("df", LOWLEVEL, ("df", "lowlevel")),
    "df-unguided": ("df", {"guidance_scale": 0.0}, ("df",)),
    "df-object": ("df", {"objective": "object_to_goal"}, ("df",)),
    "df-reach": ("df", {"objective": "reach_then_carry"}, ("df",)),
    "df-unaligned": ("df", {"grasp_align": 0.0}, ("df",)),
    "df-subgoal-layer": ("df", {"goal": "fixed"}, ("df",)),
    "df-whole-goal": ("df", {"goal": "whole", "object_choice": "given"}, ("df",)),
    "df-whole-goal-random": ("df", {"goal": "whole", "object_choice": "random"}, ("df",)),
    "diffuser": ("diffuser", {"execution": "track"}, ("diffuser",)),
    "diffuser-lowlevel": ("diffuser", LOWLEVEL, ("diffuser", "lowlevel")),
    "diffuser-replan-lowlevel": ("diffuser-replan", {**LOWLEVEL, "replan_every": 32}, ("diffuser", "lowlevel")),
    "diffuser-tuned": ("diffuser", {}, ("diffuser",)),
    "diffuser-actions": ("diffuser-actions", {}, ("diffuser",)),
    "bc": ("bc", {}, ("bc",)),
    "expert": ("expert", {}, ()),
    "random": ("random", {}, ()),
}
DEFAULTS = {"envs": ENVS, "methods": ["df", "df-unguided", "diffuser", "diffuser-actions", "bc", "expert", "random"],
            "seeds": 3, "episodes": 100, "first_seed": 100000, "batch": 0, "device": "auto", "render": None}
QUICK = {"envs": ["fetch-push"], "methods": ["df", "expert", "random"], "seeds": 1, "episodes": 4}
PREFIXES = ("checkpoint_", "diffuser_checkpoint_", "bc_checkpoint_", "lowlevel_checkpoint_")
KIND = {"checkpoint_": "df", "diffuser_checkpoint_": "diffuser", "bc_checkpoint_": "bc",
        "lowlevel_checkpoint_": "lowlevel"}


def build(method: str, task, checkpoints: dict, device: str):
    planner, kwargs, needs = METHODS[method]
    main = next((checkpoints[n] for n in needs if n != "lowlevel"), None)
    lowlevel = {"lowlevel": str(checkpoints["lowlevel"])} if "lowlevel" in needs else {}
    return make_controller(planner, task, main, device=device, **kwargs, **lowlevel)


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__, prefixes=PREFIXES)
    tasks, rows, command = common.run_methods("manipulation", args, METHODS, PREFIXES, KIND, build)
    timing = common.TIMING_COLUMNS
    sections = []
    for family, title in (("fetch", "Fetch"), ("ogbench", "OGBench cubes")):
        group = [r for r in rows if tasks[r["env"]].family == family]
        if not group:
            continue
        per_task = ([*[(f"task {k}", common.col_mean_se(f"task{k}_success")) for k in range(1, 6)],
                     ("at end %", common.col_mean_se("success_at_end"))] if family == "ogbench" else [])
        table = common.aggregate_table(group, ["env", "method"], [("success %", common.col_mean_se("score_mean")),
                                                                   *per_task, *timing])
        print(f"\n{title}: success over {args.seeds} seeds x {args.episodes} held-out episodes (mean ± s.e. over "
              f"seeds)\n{table}")
        sections.append(common.section(title, table, command))
    if args.render:
        common.write_markdown(args.render, sections, command, "Manipulation")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
