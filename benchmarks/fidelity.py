"""Paper <-> ours: the DF maze planner with one difference from the Diffusion Forcing paper code switched at a time.

    python benchmarks/fidelity.py env=pointmaze-umaze paper=runs/umaze-paper/final.pt
        optimizer=runs/umaze-paper-opt/final.pt network=runs/umaze-paper-net/final.pt
        frame_stack=runs/umaze-paper-fs4/final.pt window=runs/umaze-paper-w60/final.pt      (one command line)
    python benchmarks/fidelity.py quick=true      # smoke test, on the shipped paper checkpoint

Rows (all on the D4RL-recipe data, the same env seeds, the checkpoint's own actions):
  paper              the paper configuration: a checkpoint trained with `+experiment=df_paper` and the planner
                     settings that preset stores in it (configs/experiment/df_paper.yaml says what each one is);
                     `paper=PATH`, default the shipped pointmaze-<maze>-paper (`dfplan-eval variant=paper`)
  planner switches   the paper checkpoint with one group of planner settings set to ours, i.e. to the values tuned
                     for our shipped D4RL-data checkpoint (`ours=`, default the shipped pointmaze-<maze>-d4rl):
                     guidance (rule, scale, objective), sampler (schedule, DDIM steps), horizon (the same plan
                     length in env steps), context (how finished tokens are fed back), replanning, memory
  training switches  checkpoints trained with `+experiment=df_paper` and one override, each passed as key=PATH:
                     optimizer  train.lr=1e-3 train.warmup_steps=200 train.grad_clip=1.0 train.ema_decay=0.995
                     network    model.cell=gru model.hidden=256 model.mlp_hidden=256 model.emb_dim=64
                     frame_stack  model.frame_stack=4
                     window     train.window_steps=60 (ours: 64 steps; 60 = whole tokens of 10 steps)
  ours               our shipped D4RL-data checkpoint with its tuned settings
  ours, paper planner  the same checkpoint planned with the paper's settings
  diffuser           the shipped Diffuser (same D4RL-recipe data), planned once and tracked (its paper's protocol)
Each row: the raw return (steps inside the goal radius; the D4RL-style figure the paper's table converts from) and the
normalized score (100 = the waypoint expert), mean ± s.e. over seeds; seed s runs env seeds
first_seed + s * episodes .. (held out: the tuning of every shipped setting used other seeds).
"""

from __future__ import annotations

import math
import sys

import torch

from dfplan.controllers import make_controller
from dfplan.evaluation import run_episodes
from dfplan.registry import load_planner
from dfplan.run import reference_scores

import common

PLANNER_SWITCHES = {"guidance": ("guidance_rule", "guidance_scale", "objective"), "sampler": ("schedule", "ddim_steps"),
                    "horizon": ("horizon",), "context": ("stabilization_level", "context_noise"),
                    "replanning": ("replan_every",), "memory": ("memory",)}
TRAINING_SWITCHES = ("optimizer", "network", "frame_stack", "window")
ROWS = ["paper", *PLANNER_SWITCHES, *TRAINING_SWITCHES, "ours", "ours-paper-planner", "diffuser"]
DEFAULTS = {"env": "pointmaze-umaze", "paper": "", "ours": "", **{k: "" for k in TRAINING_SWITCHES},
            "rows": ROWS, "seeds": 3, "episodes": 20, "first_seed": 1000, "device": "auto", "render": None}
QUICK = {"rows": ["paper", "guidance", "ours"], "seeds": 1, "episodes": 2}


def switched(ours: dict, keys, paper_fs: int, ours_fs: int, default_objective: str) -> dict:
    """The settings `keys` set to ours; plan lengths and replanning periods kept in env steps."""
    out = {k: ours[k] for k in keys}
    if "objective" in keys:
        out["objective"] = ours["objective"] or default_objective
    if "horizon" in keys:
        out["horizon"] = math.ceil(ours["horizon"] * ours_fs / paper_fs)
    if "replan_every" in keys:
        out["replan_every"] = ours["replan_every"] or ours_fs
    return out


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    common.check_names("rows", args.rows, ROWS)
    task = common.task_of(args.env)
    command = common.print_command()

    device = common.resolve_device(args.device)
    paths = {"paper": common.default_checkpoint(task, args.paper or None, "df", "paper"),
             "ours": common.default_checkpoint(task, args.ours or None, "df", "d4rl"),
             "diffuser": common.default_checkpoint(task, None, "diffuser"),
             **{k: common.default_checkpoint(task, args[k]) if args[k] else None for k in TRAINING_SWITCHES}}
    if paths["paper"] is None:
        raise common.ArgError(f"error: no paper checkpoint ships for {task.name}; pass paper=PATH, one trained with "
                              f"{task.train_command('paper')}")
    paper_planner = load_planner(paths["paper"], device=device)
    ours_planner = load_planner(paths["ours"], device=device)
    paper, ours = paper_planner.settings.flat(), ours_planner.settings.flat()  # the tuned settings of each
    fs = (paper_planner.frame_stack, ours_planner.frame_stack)
    plan = {"paper": ("paper", {}), "ours": ("ours", {}), "ours-paper-planner": ("ours", paper),
            **{k: ("paper", switched(ours, keys, *fs, task.objectives[0])) for k, keys in PLANNER_SWITCHES.items()},
            **{k: (k, {}) for k in TRAINING_SWITCHES}, "diffuser": ("diffuser", {})}
    results = common.Results("fidelity", args, command)
    rows, notes = [], []
    for name in args.rows:
        source, overrides = plan[name]
        if paths[source] is None:
            notes.append(f"{name}: skipped, pass {name}=PATH (a checkpoint trained as the docstring says)")
            print("note: " + notes[-1], flush=True)
            continue
        planner = "diffuser" if source == "diffuser" else "df"
        controller = make_controller(planner, task, paths[source], device=device, **overrides)
        ref = reference_scores(task, controller)
        for seed in range(args.seeds):
            first = args.first_seed + seed * args.episodes
            res = run_episodes(controller, task, goal="fixed", episodes=args.episodes, seed=first, batch=args.episodes,
                               progress=False)
            s = res.summary(task, ref)
            plain = "–" if source in ("paper", "ours", "diffuser") else source
            label = "the paper's planner settings" if name == "ours-paper-planner" else \
                ", ".join(f"{k}={v}" for k, v in overrides.items()) or plain
            rows.append(results.add({"env": task.name, "row": name, "switched": label, "seed": seed,
                                     "first_env_seed": first,
                                     "checkpoint": str(paths[source]), "overrides": overrides,
                                     "settings": common.controller_settings(controller), "device": device, **s,
                                     "plan_s_per_episode": controller.plan_seconds / args.episodes,
                                     "episode_returns": [e.ret for e in res.episodes]}, device))
            controller.plan_seconds = 0.0  # per seed
            print(f"  {name:20s} seed {seed}: return {s['return_mean']:6.1f}  score {s['score_mean']:6.1f}  "
                  f"success {s['success_rate']:.0%}", flush=True)
    table = common.aggregate_table(rows, ["row", "switched"], [
        ("raw return", common.col_mean_se("return_mean", 1)),
        ("normalized score", common.col_mean_se("score_mean", 1)),
        ("success", common.col_mean_se("success_rate", 0, pct=True)),
        ("time to goal (steps)", common.col_mean_se("mean_time_to_goal", 0)),
        ("plan s / episode", common.col_mean_se("plan_s_per_episode", 2)),
    ], key_headers=["row", "switched to ours"])
    section = common.section(f"{task.name}, paper <-> ours: mean ± s.e. over {args.seeds} seeds x {args.episodes} "
                             f"episodes, env seeds {args.first_seed}+ ({device}, torch threads "
                             f"{torch.get_num_threads()})", table, command,
                             "\n".join(f"- {n}" for n in notes) or None)
    print()
    print(section)
    print(f"appended {len(results.rows)} rows to {results.path}")
    if args.render:
        print(f"wrote {common.write_markdown(args.render, [section], command, 'Paper fidelity')}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
