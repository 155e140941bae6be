"""DF vs Diffuser speed on the same machine, in one run: ms per decision, ms per plan, episodes per minute.

    python benchmarks/speed.py env=pointmaze-umaze device=cpu
    python benchmarks/speed.py df_checkpoint=PATH diffuser_checkpoint=PATH
    python benchmarks/speed.py quick=true threads=1                  # smoke test, < 1 minute on 2 cores

For each method (df with the checkpoint's tuned controller settings; `diffuser_modes` of the Diffuser baseline,
built by `dfplan.controllers.make_controller` like `dfplan-eval planner=...`):
- ms per decision: `controller.act` on single (unbatched) observations over one whole episode per seed, averaged
  over the episode, replans included (how the controller amortizes its plans);
- ms per plan: median of `planner.plan` from the episode's reset state (batch 1) over `plans` plans after `warmup`,
  at the controller's horizon (DF: tuned horizon in tokens; Diffuser: its fixed trajectory length);
- episodes per minute of `dfplan.evaluation.evaluate` for `episodes` episodes run as one batch.
Ratios are Diffuser / DF. Checkpoints default to the shipped ones (`shipped_checkpoint`); without a Diffuser
checkpoint the Diffuser rows are skipped with a note. Mean ± s.e. over `seeds` (episode seeds 0..seeds-1).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

import common

DEFAULTS = {
    "env": "pointmaze-umaze",
    "df_checkpoint": None,
    "diffuser_checkpoint": None,
    "diffuser_modes": ["diffuser", "diffuser-replan"],
    "device": "auto",
    "goal": "fixed",
    "seeds": 3,
    "plans": 10,
    "warmup": 2,
    "episodes": 4,  # evaluate() episodes for episodes/minute (batch = episodes)
    "max_episode_steps": 0,  # 0 = the env's own (300 / 600 / 800)
}
QUICK = {"seeds": 1, "plans": 3, "warmup": 1, "episodes": 2, "max_episode_steps": 100, "diffuser_modes": ["diffuser"]}


def decision_times(controller, env_name: str, goal: str, seed: int, max_steps: int | None) -> dict:
    from dfplan.envs import make_env

    env = make_env(env_name, goal=goal, max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed)
    steps = env.spec.max_episode_steps
    if hasattr(controller, "max_episode_steps"):
        controller.max_episode_steps = steps
    controller.reset(seed=seed)
    plans_before = getattr(controller, "plans_made", getattr(controller, "n_plans", 0))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        action = controller.act(obs)
        times.append(1000 * (time.perf_counter() - t0))
        obs, *_ = env.step(action)
    env.close()
    plans = getattr(controller, "plans_made", getattr(controller, "n_plans", 0)) - plans_before
    return {"decision_ms": float(np.mean(times)), "decision_ms_median": statistics.median(times),
            "decision_ms_max": float(np.max(times)), "episode_steps": steps, "plans_per_episode": plans}


def plan_times(planner, method: str, horizon, obs, goal, plans: int, warmup: int, seed: int, device: str) -> dict:
    obs_t = torch.as_tensor(obs[None], device=planner.device)
    goal_t = torch.as_tensor(goal[None], device=planner.device)
    gen = torch.Generator(device=planner.device).manual_seed(seed)

    def once():
        if method == "df":
            return planner.plan(obs_t, goal_t, horizon, generator=gen)
        return planner.plan(obs_t, goal_t, generator=gen)

    for _ in range(warmup):
        plan = once()
    times = []
    for _ in range(plans):
        common.sync(device)
        t0 = time.perf_counter()
        plan = once()
        common.sync(device)
        times.append(1000 * (time.perf_counter() - t0))
    return {"plan_ms": statistics.median(times), "plan_env_steps": int(plan.actions.shape[1]), "plan_times_ms": times}


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    command = common.print_command()
    from dfplan.checkpoint import load_checkpoint
    from dfplan.controllers import DIFFUSER_MODES, make_controller
    from dfplan.evaluation import evaluate

    bad = [m for m in args.diffuser_modes if m not in DIFFUSER_MODES]
    if bad:
        raise common.ArgError(f"error: unknown diffuser_modes {bad}; choose from {sorted(DIFFUSER_MODES)}")
    device = common.resolve_device(args.device)
    max_steps = args.max_episode_steps or None
    df_ckpt = common.default_checkpoint(args.env, args.df_checkpoint, "df")
    if df_ckpt is None:
        raise common.ArgError(f"error: no shipped DF checkpoint for {args.env}; pass df_checkpoint=PATH")
    diff_ckpt = common.default_checkpoint(args.env, args.diffuser_checkpoint, "diffuser")
    methods = [("df", df_ckpt)]
    note = None
    if diff_ckpt is None:
        note = (f"note: no Diffuser checkpoint for {args.env} (none shipped, none given): Diffuser rows skipped; "
                f"train one with `dfplan-train env={args.env} model=diffuser train=diffuser_cpu` and pass "
                f"diffuser_checkpoint=PATH")
        print(note, flush=True)
    else:
        methods += [(m, diff_ckpt) for m in args.diffuser_modes]
    args["df_checkpoint"], args["diffuser_checkpoint"] = str(df_ckpt), diff_ckpt and str(diff_ckpt)

    results = common.Results("speed", args, command)
    rows = []
    for method, ckpt in methods:
        controller = make_controller(method, ckpt, device=device, env=args.env)
        planner = controller.planner
        horizon = getattr(controller, "horizon", None)
        ref = load_checkpoint(ckpt).get("ref_scores")
        for seed in range(args.seeds):
            obs, goals = common.reset_states(args.env, [seed], goal=args.goal)
            row = {"env": args.env, "goal": args.goal, "method": method, "seed": seed, "device": device,
                   "checkpoint": str(ckpt), "horizon_tokens": horizon}
            row.update(decision_times(controller, args.env, args.goal, seed, max_steps))
            row.update(plan_times(planner, "df" if method == "df" else method, horizon, obs[0], goals[0],
                                  args.plans, args.warmup, seed, device))
            res = evaluate(controller, args.env, goal=args.goal, episodes=args.episodes, seed=1000 * seed,
                           batch=args.episodes, ref_scores=tuple(ref) if ref and None not in ref else None,
                           progress=False, max_episode_steps=max_steps)
            s = res.summary()
            row.update(episodes_per_minute=s["episodes_per_minute"], eval_seconds=s["seconds"],
                       eval_episodes=s["episodes"], normalized_score=s.get("normalized_score_mean"),
                       success_rate=s["success_rate"])
            rows.append(results.add(row, device))
            print(f"  {method} seed {seed}: {row['decision_ms']:.1f} ms/decision ({row['plans_per_episode']} plans), "
                  f"{row['plan_ms']:.1f} ms/plan, {row['episodes_per_minute']:.1f} episodes/min", flush=True)

    table = common.aggregate_table(rows, ["method", "device"], [
        ("ms / decision", common.col_mean_se("decision_ms", 2)),
        ("plans / episode", common.col_mean_se("plans_per_episode", 0)),
        ("ms / plan", common.col_mean_se("plan_ms", 1)),
        ("env steps / plan", lambda g: str(g[0]["plan_env_steps"])),
        (f"episodes / min ({args.episodes} batched)", common.col_mean_se("episodes_per_minute", 1)),
    ], key_headers=["method", "device"])
    df_rows = [r for r in rows if r["method"] == "df"]
    ratio_lines = []
    for method in [m for m, _ in methods if m != "df"]:
        mine = [r for r in rows if r["method"] == method]
        ratio = lambda key: (np.mean([r[key] for r in mine]) / np.mean([r[key] for r in df_rows]))  # noqa: E731
        ratio_lines.append([method, f"{ratio('decision_ms'):.2f}", f"{ratio('plan_ms'):.2f}",
                            f"{1 / ratio('episodes_per_minute'):.2f}"])
    sections = [common.section(f"Speed, {args.env} ({args.goal} goal), {device}, torch threads "
                               f"{torch.get_num_threads()}; mean ± s.e. over {args.seeds} seeds", table, command,
                               note)]
    if ratio_lines:
        sections.append(common.section("Ratios Diffuser / DF (> 1: Diffuser slower)", common.markdown_table(
            ["method", "ms/decision ratio", "ms/plan ratio", "eval time ratio"], ratio_lines), command))
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(main())
