"""Closed-loop PointMaze benchmark: every env x goal protocol x method x seed through `dfplan.evaluation.evaluate`.

    python benchmarks/maze.py                                     # all three mazes, fixed and random goals
    python benchmarks/maze.py envs=pointmaze-umaze seeds=3 episodes=50 render=benchmarks/RESULTS.md
    python benchmarks/maze.py checkpoint_pointmaze-medium=runs/medium/model.pt diffuser_checkpoint_pointmaze-medium=PATH
    python benchmarks/maze.py quick=true threads=1                # smoke test, < 1 minute on 2 cores

Methods (controllers built by `dfplan.controllers.make_controller`, as `dfplan-eval` does):
  df             the DF MPC controller with the checkpoint's tuned settings
  df-no-mcg      mc_samples=1 (plain guidance)        df-mcg      mc_samples=4 (Monte Carlo Guidance)
  df-no-memory   memory=false (latent re-initialized at every replan, the paper's setting)
  df-replan8     replan_every=8 env steps (two tokens)    df-replan4  replan every token
  df-warm1, df-warm2, df-cold   warm start from the previous plan at DDIM step 1 / 2, or off
  df-geodesic, df-goal-distance  guidance objective: shortest-path distance around the walls (knows the map) /
                 straight-line distance (the paper's)
  df-dwell, df-dwell-geodesic, df-dwell-goal-distance   the DF checkpoint trained on the dwell dataset variant
                 (`dwell_checkpoint_<env>=PATH`, else the shipped `<env>-dwell.pt`); df-dwell-memory,
                 df-dwell-no-memory   the same with memory on / off
  diffuser, diffuser-replan, diffuser-actions   the Diffuser baseline, when a Diffuser checkpoint is available
  expert         WaypointExpert(layout): the D4RL expert that defines score 100
  oracle         WaypointExpert(layout, lookahead=True): a faster scripted ceiling
DF checkpoints: `checkpoint_<env>=PATH`, else the shipped `dfplan/checkpoints/<env>.pt`; an env without one is
skipped with a note. Diffuser: `diffuser_checkpoint_<env>=PATH` (else a shipped `<env>-diffuser.pt` if any).
Seed s runs episodes with env seeds s*episodes .. (s+1)*episodes-1 (the same for every method), all `episodes`
in one batch by default. Tables: normalized score (100 = expert, 0 = random; the checkpoint's reference
scores) and success rate as mean ± s.e. over seeds, time to goal (steps, among episodes that reached it),
episodes per minute. `render=FILE.md` writes the tables to a Markdown file.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import common

ENVS = ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"]
DF_METHODS = {"df": {}, "df-no-mcg": {"mc_samples": 1}, "df-mcg": {"mc_samples": 4},
              "df-no-memory": {"memory": False}, "df-replan8": {"replan_every": 8},
              "df-replan4": {"replan_every": 4}, "df-warm1": {"warm_start_step": 1}, "df-warm2": {"warm_start_step": 2},
              "df-cold": {"warm_start_step": 0}, "df-geodesic": {"objective": "geodesic"},
              "df-goal-distance": {"objective": "goal_distance"},
              "df-dwell": {"checkpoint": "dwell"}, "df-dwell-geodesic": {"checkpoint": "dwell", "objective": "geodesic"},
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


class ScriptedController:
    """A WaypointExpert as a controller: reset(seed) / act(single or batched dict observation)."""

    def __init__(self, layout, lookahead: bool):
        from dfplan.envs import WaypointExpert

        self.expert = WaypointExpert(layout, lookahead=lookahead)
        self.failures = 0

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        from dfplan.types import split_observation

        states, goals, batched = split_observation(obs)
        actions = np.stack([self.expert({"observation": s, "desired_goal": g}) for s, g in zip(states, goals)])
        actions = actions.astype(np.float32)
        return actions if batched else actions[0]


def build(method: str, env: str, df_ckpt, diff_ckpt, dwell_ckpt, device: str):
    """(controller, settings dict, checkpoint used for the reference scores)."""
    from dfplan.controllers import make_controller
    from dfplan.envs import MazeLayout, get_maze

    if method in SCRIPTED:
        layout = MazeLayout(get_maze(env).maze_map)
        return ScriptedController(layout, SCRIPTED[method]), {"lookahead": SCRIPTED[method]}, df_ckpt
    if method in DF_METHODS:
        ov = dict(DF_METHODS[method])
        ckpt = dwell_ckpt if ov.pop("checkpoint", None) == "dwell" else df_ckpt
        c = make_controller("df", ckpt, device=device, env=env, **ov)
        s = c.planner.sampler
        settings = {"horizon": c.horizon, "replan_every": c.replan_every, "memory": c.memory,
                    "objective": type(c.objective).__name__ if c.objective else "goal_distance",
                    "sampler": {k: getattr(s, k) for k in ("steps", "schedule", "guidance_scale", "mc_samples",
                                                           "warm_start_step")}}
        return c, settings, ckpt
    c = make_controller(method, diff_ckpt, device=device)
    return c, {"mode": c.mode, "replan_every": c.replan_every, "horizon": c.planner.horizon}, diff_ckpt


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__, prefixes=PREFIXES)
    from dfplan.envs import MAZES

    known = set(DF_METHODS) | set(DIFFUSER_METHODS) | set(SCRIPTED)
    for key, values, allowed in (("methods", args.methods, known), ("envs", args.envs, set(MAZES)),
                                 ("goals", args.goals, {"fixed", "random"})):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise common.ArgError(f"error: unknown {key} {bad}; choose from {sorted(allowed)}")
    for prefix in PREFIXES:
        bad = [e for e in common.prefixed(args, prefix) if e not in MAZES]
        if bad:
            raise common.ArgError(f"error: {prefix}<env> for unknown envs {bad}; envs: {sorted(MAZES)}")
    command = common.print_command()
    from dfplan.checkpoint import load_checkpoint
    from dfplan.evaluation import evaluate

    device = common.resolve_device(args.device)
    max_steps = args.max_episode_steps or None
    df_given, diff_given = common.prefixed(args, "checkpoint_"), common.prefixed(args, "diffuser_checkpoint_")
    results = common.Results("maze", args, command)
    notes, rows = [], []
    for env in args.envs:
        df_ckpt = common.default_checkpoint(env, df_given.get(env), "df")
        if df_ckpt is None or not df_ckpt.is_file():
            notes.append(f"{env}: skipped, no DF checkpoint ({df_ckpt or 'none shipped'}); pass checkpoint_{env}=PATH "
                         f"(train with: dfplan-train env={env})")
            print("note: " + notes[-1], flush=True)
            continue
        diff_ckpt = common.default_checkpoint(env, diff_given.get(env), "diffuser")
        methods = list(args.methods)
        if diff_ckpt is None and any(m in DIFFUSER_METHODS for m in methods):
            methods = [m for m in methods if m not in DIFFUSER_METHODS]
            notes.append(f"{env}: Diffuser rows skipped, no Diffuser checkpoint; pass diffuser_checkpoint_{env}=PATH")
            print("note: " + notes[-1], flush=True)
        dwell_ckpt = common.default_checkpoint(env, common.prefixed(args, "dwell_checkpoint_").get(env), "dwell")
        dwell_methods = [m for m in methods if DF_METHODS.get(m, {}).get("checkpoint") == "dwell"]
        if dwell_ckpt is None and dwell_methods:
            methods = [m for m in methods if m not in dwell_methods]
            notes.append(f"{env}: dwell rows skipped, no dwell checkpoint; pass dwell_checkpoint_{env}=PATH")
            print("note: " + notes[-1], flush=True)
        for goal in args.goals:
            for method in methods:
                controller, settings, ref_ckpt = build(method, env, df_ckpt, diff_ckpt, dwell_ckpt, device)
                ref = load_checkpoint(ref_ckpt).get("ref_scores")
                for seed in range(args.seeds):
                    res = evaluate(controller, env, goal=goal, episodes=args.episodes, seed=seed * args.episodes,
                                   batch=args.batch or args.episodes,
                                   ref_scores=tuple(ref) if ref and None not in ref else None, progress=False,
                                   max_episode_steps=max_steps)
                    s = res.summary()
                    row = results.add({"env": env, "goal": goal, "method": method, "seed": seed, "device": device,
                                       "checkpoint": str(ref_ckpt) if method not in SCRIPTED else None,
                                       "settings": settings, "max_episode_steps": max_steps,
                                       "first_env_seed": seed * args.episodes, **s,
                                       "normalized_scores": res.normalized().tolist() if res.ref_min is not None else None},
                                      device)
                    rows.append(row)
                    score = s.get("normalized_score_mean")
                    print(f"  {env} {goal:6s} {method:16s} seed {seed}: score "
                          f"{'n/a' if score is None else f'{score:6.1f}'}  success {s['success_rate']:.0%}  "
                          f"{s['episodes_per_minute']:.1f} ep/min", flush=True)

    def ttg(group):
        return common.fmt_mean_se((r["mean_time_to_goal"] for r in group), 0)

    sections = []
    trunc = (f"Episodes truncated to {max_steps} steps: scores are not comparable with full-length episodes."
             if max_steps else None)
    for env in dict.fromkeys(r["env"] for r in rows):
        table = common.aggregate_table([r for r in rows if r["env"] == env], ["goal", "method"], [
            ("normalized score", common.col_mean_se("normalized_score_mean", 1)),
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
        path = common.write_markdown(args.render, sections, command, "PointMaze closed-loop results")
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
