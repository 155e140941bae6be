"""Closed-loop PointMaze benchmark: every env x goal protocol x method x seed through `dfplan.evaluation.evaluate`.

    python benchmarks/maze.py                                     # all three mazes, fixed and random goals
    python benchmarks/maze.py envs=pointmaze-umaze seeds=3 episodes=50 render=benchmarks/RESULTS.md
    python benchmarks/maze.py checkpoint_pointmaze-medium=runs/medium/model.pt diffuser_checkpoint_pointmaze-medium=PATH
    python benchmarks/maze.py quick=true threads=1                # smoke test, < 1 minute on 2 cores

Methods (controllers built by `dfplan.controllers.make_controller` for the task of `dfplan.tasks.get_task(env)`,
as `dfplan-eval` does; the recorded settings are the controller's own, `dataclasses.asdict` of its settings):
  df             the DF MPC controller of the D4RL-recipe checkpoint (variant d4rl) with its tuned settings
  df-no-mcg      mc_samples=1 (plain guidance)        df-mcg      mc_samples=4 (Monte Carlo Guidance)
  df-no-memory   memory=false (latent re-initialized at every replan, the paper's setting)
  df-replan8     replan_every=8 env steps (two tokens)    df-replan4  replan every token
  df-warm1, df-warm2, df-cold   warm start from the previous plan at DDIM step 1 / 2, or off
  df-geodesic, df-goal-distance  guidance objective: shortest-path distance around the walls (knows the map) /
                 straight-line distance (the paper's); df-geodesic-best8   geodesic, the best of 8 plans (the
                 dwell models' planner)
  df-dwell, df-dwell-geodesic, df-dwell-goal-distance   the DF checkpoint trained on the dwell dataset variant
                 (variant dwell, the task's default); df-dwell-memory, df-dwell-no-memory   the same with memory
                 on / off
  diffuser, diffuser-replan, diffuser-actions   the Diffuser baseline, when a Diffuser checkpoint is available
  expert         the task's scripted expert, `task.expert(lookahead=False)` (PointMaze: the D4RL waypoint expert
                 that defines score 100)
  oracle         `task.expert(lookahead=True)` (PointMaze: the look-ahead waypoint expert, a faster ceiling)
Checkpoints: `checkpoint_<env>=PATH` (the `df*` methods), `dwell_checkpoint_<env>=PATH` (the `df-dwell*` ones),
`diffuser_checkpoint_<env>=PATH`, each a path or a shipped name; else the task's shipped ones
(`task.shipped_checkpoint`: `dfplan/checkpoints/<env>-d4rl.pt`, `<env>-dwell.pt`, `<env>-diffuser.pt`).
Methods whose checkpoint is missing are skipped with a note.
Seed s runs episodes with env seeds s*episodes .. (s+1)*episodes-1 (the same for every method), all `episodes`
in one batch by default. Tables: the task's score (PointMaze: normalized score, 100 = expert, 0 = random, from
the checkpoint's reference scores, `dfplan.run.reference_scores`) and success rate as mean ± s.e. over seeds,
time to goal (steps, among episodes that reached it), episodes per minute. `render=FILE.md` writes the tables
to a Markdown file.
"""

from __future__ import annotations

import sys

import torch

from dfplan.controllers import make_controller
from dfplan.evaluation import run_episodes
from dfplan.run import reference_scores

import common

ENVS = ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"]
DF_METHODS = {"df": {}, "df-no-mcg": {"mc_samples": 1}, "df-mcg": {"mc_samples": 4},
              "df-no-memory": {"memory": False}, "df-replan8": {"replan_every": 8},
              "df-replan4": {"replan_every": 4}, "df-warm1": {"warm_start_step": 1}, "df-warm2": {"warm_start_step": 2},
              "df-cold": {"warm_start_step": 0}, "df-geodesic": {"objective": "geodesic"},
              "df-geodesic-best8": {"objective": "geodesic", "candidates": 8},
              "df-goal-distance": {"objective": "goal_distance"},
              "df-dwell": {"checkpoint": "dwell"},
              "df-dwell-geodesic": {"checkpoint": "dwell", "objective": "geodesic"},
              "df-dwell-goal-distance": {"checkpoint": "dwell", "objective": "goal_distance"},
              "df-dwell-memory": {"checkpoint": "dwell", "memory": True},
              "df-dwell-no-memory": {"checkpoint": "dwell", "memory": False}}
DIFFUSER_METHODS = ("diffuser", "diffuser-replan", "diffuser-actions")
SCRIPTED = {"expert": False, "oracle": True}  # name -> lookahead
DEFAULTS = {
    "envs": ENVS,
    "goals": ["fixed", "random"],
    "methods": ["df", "df-no-mcg", "df-mcg", "df-no-memory", "df-replan8", "diffuser", "diffuser-replan",
                "expert", "oracle"],
    "seeds": 3,
    "episodes": 50,
    "batch": 0,  # envs stepped together; 0 = episodes
    "device": "auto",
    "max_episode_steps": 0,  # 0 = the env's own (300 / 600 / 800); shorter ones make scores incomparable
    "render": None,
}
QUICK = {"envs": ["pointmaze-umaze"], "goals": ["fixed"], "methods": ["df", "df-no-memory", "expert", "oracle"],
         "seeds": 2, "episodes": 2, "max_episode_steps": 100}
PREFIXES = ("checkpoint_", "diffuser_checkpoint_", "dwell_checkpoint_")


def df_variant(method: str) -> str:
    """The shipped DF checkpoint variant a `df*` method runs: dwell for the `df-dwell*` methods, else d4rl."""
    return "dwell" if DF_METHODS[method].get("checkpoint") == "dwell" else "d4rl"


def build(method: str, task, checkpoints: dict, device: str):
    """The controller of `method` on `task`; `checkpoints`: {"d4rl" | "dwell" | "diffuser": path} (those found)."""
    if method in SCRIPTED:
        return task.expert(lookahead=SCRIPTED[method])
    if method in DF_METHODS:
        overrides = {k: v for k, v in DF_METHODS[method].items() if k != "checkpoint"}
        variant = df_variant(method)
        return make_controller("df", task, checkpoints[variant], variant=variant, device=device, **overrides)
    return make_controller(method, task, checkpoints["diffuser"], device=device)


def needs(method: str) -> str | None:
    """Which checkpoint a method needs (a key of `build`'s `checkpoints`), None for the scripted ones."""
    if method in DF_METHODS:
        return df_variant(method)
    return "diffuser" if method in DIFFUSER_METHODS else None


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__, prefixes=PREFIXES)
    common.check_names("methods", args.methods, set(DF_METHODS) | set(DIFFUSER_METHODS) | set(SCRIPTED))
    tasks = {env: common.task_of(env) for env in args.envs}
    for task in tasks.values():
        bad = [g for g in args.goals if g not in task.goal_modes]
        if bad:
            raise common.ArgError(f"error: unknown goals {bad} for {task.name}; choose from {list(task.goal_modes)}")
    given = {prefix: common.prefixed(args, prefix) for prefix in PREFIXES}
    for prefix, envs in given.items():
        for env in envs:
            common.task_of(env)  # an unknown env is an error, with the known ones
    found = {env: {  # the checkpoint given (a missing file is an error), else the shipped one, else None
        "d4rl": common.default_checkpoint(task, given["checkpoint_"].get(env), "df", "d4rl"),
        "dwell": common.default_checkpoint(task, given["dwell_checkpoint_"].get(env), "df", "dwell"),
        "diffuser": common.default_checkpoint(task, given["diffuser_checkpoint_"].get(env), "diffuser"),
    } for env, task in tasks.items()}
    hint = {"d4rl": "checkpoint_", "dwell": "dwell_checkpoint_", "diffuser": "diffuser_checkpoint_"}
    command = common.print_command()

    device = common.resolve_device(args.device)
    max_steps = args.max_episode_steps or None
    results = common.Results("maze", args, command)
    notes, rows = [], []
    for env, task in tasks.items():
        checkpoints = found[env]
        methods = []
        for method in args.methods:
            need = needs(method)
            if need is not None and checkpoints[need] is None:
                notes.append(f"{env}: {method} skipped, no {need} checkpoint ships for it; pass "
                             f"{hint[need]}{env}=PATH")
                print("note: " + notes[-1], flush=True)
            else:
                methods.append(method)
        for goal in args.goals:
            for method in methods:
                controller = build(method, task, checkpoints, device)
                ref = reference_scores(task, controller)
                settings = common.controller_settings(controller)
                checkpoint = getattr(getattr(controller, "planner", None), "meta", {}).get("path")
                for seed in range(args.seeds):
                    res = run_episodes(controller, task, goal=goal, episodes=args.episodes, seed=seed * args.episodes,
                                       batch=args.batch or args.episodes, progress=False, max_episode_steps=max_steps)
                    s = res.summary(task, ref)
                    row = results.add({"env": env, "goal": goal, "method": method, "seed": seed, "device": device,
                                       "checkpoint": checkpoint, "settings": settings, "max_episode_steps": max_steps,
                                       "first_env_seed": seed * args.episodes, **s,
                                       "episode_returns": [e.ret for e in res.episodes],
                                       "episode_success": [e.success for e in res.episodes]}, device)
                    rows.append(row)
                    print(f"  {env} {goal:6s} {method:16s} seed {seed}: {s['score_name']} {s['score_mean']:6.1f}  "
                          f"success {s['success_rate']:.0%}  {s['episodes_per_minute']:.1f} ep/min", flush=True)

    def ttg(group):
        return common.fmt_mean_se((r["mean_time_to_goal"] for r in group), 0)

    sections = []
    trunc = (f"Episodes truncated to {max_steps} steps: scores are not comparable with full-length episodes."
             if max_steps else None)
    for env in dict.fromkeys(r["env"] for r in rows):
        env_rows = [r for r in rows if r["env"] == env]
        table = common.aggregate_table(env_rows, ["goal", "method"], [
            (" / ".join(dict.fromkeys(r["score_name"] for r in env_rows)), common.col_mean_se("score_mean", 1)),
            ("success", common.col_mean_se("success_rate", 0, pct=True)),
            ("time to goal (steps)", ttg),
            ("episodes/min", common.col_mean_se("episodes_per_minute", 1)),
            ("failures", lambda g: str(sum(r["failures"] for r in g))),
        ], key_headers=["goal", "method"])
        sections.append(common.section(
            f"{env}: mean ± s.e. over {args.seeds} seeds x {args.episodes} episodes ({device}, torch threads "
            f"{torch.get_num_threads()})", table, command, trunc))
    if notes:
        sections.append("Notes:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")
    if args.render:
        path = common.write_markdown(args.render, sections, command, "Closed-loop results")
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
