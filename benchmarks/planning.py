"""Planning benchmark of the DF planner: (a) latency per plan, (b) open-loop plan quality.

    python benchmarks/planning.py env=pointmaze-umaze variant=d4rl device=cpu
    python benchmarks/planning.py checkpoint=runs/umaze/final.pt       # env: the task the checkpoint was made for
    python benchmarks/planning.py quick=true threads=1          # smoke test, < 1 minute on 2 cores

Checkpoint: `checkpoint=` (a path or a shipped name), else the one the task (`env`, default pointmaze-umaze)
ships of `variant` (none = the task's default, e.g. dwell; the committed results used variant=d4rl). The task
(`dfplan.tasks.get_task`) gives the start states (its env's reset states, its default goal protocol) and the
plan statistics (`task.plan_stats`).
(a) Latency: median wall time of `DFPlanner.plan` over `plans` plans (after `warmup` plans) for every
    horizon (tokens) x DDIM steps x MC samples R x candidates N x batch, guided with the checkpoint's tuned guidance
    scale (`planner.settings.sampler.guidance_scale`; `guidance_scale=` overrides). Also on CUDA when torch sees one
    (`cuda=false` to skip).
(b) Quality: one plan of `quality_horizon` tokens from each env reset state (seeds 0..quality_seeds-1) per
    variant (guidance on/off x MCG R=4/off x pyramid/full_sequence), scored by `task.plan_stats` per plan
    (PointMaze: distance from the planned end position to the goal, plans with a state inside a wall, states
    inside walls, plans ending within the goal radius) plus the closest planned approach to the goal and the
    open-loop dynamics error (`dfplan.run.dynamics_error`: the plan's own actions executed in the real env from the
    same reset state; mean distance between planned and reached goal-dim positions over the first 32 env steps).
    Mean ± s.e. over start states.
Each row records the sampler settings the plans used (`dataclasses.asdict`, under "sampler").
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from dfplan.registry import load_planner
from dfplan.run import dynamics_error, execute_open_loop

import common

DEFAULTS = {
    "checkpoint": None,  # a path or a shipped name; default: the shipped checkpoint of env (of variant)
    "env": None,  # task; default: the checkpoint's, else pointmaze-umaze
    "variant": None,  # shipped DF checkpoint variant (dwell | d4rl for PointMaze); default: the task's
    "device": "cpu",
    "cuda": True,  # also measure latency on CUDA when available
    "part": "all",  # all | latency | quality
    "horizons": [8, 16, 32, 64],
    "ddim_steps": [10, 20, 50],
    "mc": [1, 4],
    "candidates": [1],  # best-of-N plans per env (`candidates`), e.g. [1,8]
    "batches": [1, 32],
    "plans": 20,
    "warmup": 2,
    "guidance_scale": -1.0,  # < 0: the checkpoint's tuned scale
    "quality_seeds": 50,
    "quality_horizon": 32,
    "sample_seed": 0,
}
QUICK = {"horizons": [8, 32], "ddim_steps": [10], "mc": [1, 4], "batches": [1, 8], "plans": 5, "warmup": 1,
         "quality_seeds": 8}


def latency(planner, task, args, scale: float, device: str, results: common.Results) -> list[dict]:
    rows = []
    obs_all, goal_all = common.reset_states(task, range(max(args.batches)))
    configs = [(h, s, r, n, b) for h in args.horizons for s in args.ddim_steps for r in args.mc
               for n in args.candidates for b in args.batches]
    print(f"latency on {device}: {len(configs)} configs x ({args.warmup} warm-up + {args.plans} plans)", flush=True)
    for h, s, r, n, b in configs:
        obs = torch.as_tensor(obs_all[:b], device=device)
        goal = torch.as_tensor(goal_all[:b], device=device)
        gen = torch.Generator(device=device).manual_seed(args.sample_seed)
        kw = dict(ddim_steps=s, mc_samples=r, candidates=n, guidance_scale=scale)
        sampler = replace(planner.sampler, **kw)  # what the plans use (validated here, before the timing)
        for _ in range(args.warmup):
            planner.plan(obs, goal, h, generator=gen, **kw)
        times = []
        for _ in range(args.plans):
            common.sync(device)
            t0 = time.perf_counter()
            planner.plan(obs, goal, h, generator=gen, **kw)
            common.sync(device)
            times.append(1000 * (time.perf_counter() - t0))
        q = np.percentile(times, [10, 90])
        row = {"part": "latency", "env": task.name, "method": "df", "device": device, "horizon_tokens": h,
               "env_steps": h * planner.frame_stack, "ddim_steps": s, "mc_samples": r, "candidates": n, "batch": b,
               "guidance_scale": scale, "sampler": asdict(sampler), "plans": args.plans,
               "median_ms": statistics.median(times), "p10_ms": float(q[0]), "p90_ms": float(q[1]),
               "median_ms_per_plan_row": statistics.median(times) / b, "times_ms": times}
        rows.append(results.add(row, device))
        print(f"  H={h:3d} steps={s:3d} R={r} N={n} B={b:3d}: median {row['median_ms']:8.1f} ms", flush=True)
    return rows


def latency_table(rows: list[dict]) -> str:
    lines = [[r["device"], r["horizon_tokens"], r["env_steps"], r["ddim_steps"], r["mc_samples"],
              r.get("candidates", 1), r["batch"], f"{r['median_ms']:.1f}", f"{r['p10_ms']:.1f}–{r['p90_ms']:.1f}",
              f"{r['median_ms_per_plan_row']:.2f}"]
             for r in rows]
    return common.markdown_table(["device", "H (tokens)", "env steps", "DDIM steps", "R", "N", "batch", "median ms",
                                  "p10–p90 ms", "ms per plan row"], lines)


def variants(scale: float) -> list[tuple[str, dict]]:
    out = []
    for schedule in ("pyramid", "full_sequence"):
        out.append((f"{schedule} no-guidance", dict(schedule=schedule, guidance_scale=0.0, mc_samples=1)))
        out.append((f"{schedule} guided", dict(schedule=schedule, guidance_scale=scale, mc_samples=1)))
        out.append((f"{schedule} guided+MCG(R=4)", dict(schedule=schedule, guidance_scale=scale, mc_samples=4)))
    return out


def quality(planner, task, args, scale: float, results: common.Results) -> tuple[list[dict], list[str]]:
    """Rows per start state x variant, and the names of the statistics in them."""
    seeds = list(range(args.quality_seeds))
    obs, goals = common.reset_states(task, seeds)
    dims = list(task.goal_dims)
    device = str(planner.device)
    rows = []
    print(f"quality: {len(seeds)} start states x {len(variants(scale))} variants at H={args.quality_horizon}",
          flush=True)
    for name, kw in variants(scale):
        sampler = replace(planner.sampler, **kw)
        gen = torch.Generator(device=device).manual_seed(args.sample_seed)
        t0 = time.perf_counter()
        plan = planner.plan(torch.as_tensor(obs), torch.as_tensor(goals), args.quality_horizon, generator=gen, **kw)
        seconds = time.perf_counter() - t0
        states = plan.states.cpu().numpy()
        closest = np.linalg.norm(states[..., dims] - goals[:, None], axis=-1).min(axis=1)
        executed = execute_open_loop(task, task.default_goal, seeds, plan.actions.cpu().numpy())
        stats = []
        for i, seed in enumerate(seeds):
            stats.append({**task.plan_stats(states[i:i + 1], goals[i:i + 1]),
                          "dynamics_error": dynamics_error(states[i:i + 1], executed[i:i + 1], dims)})
            rows.append(results.add({
                "part": "quality", "env": task.name, "method": name, "seed": seed,
                "horizon_tokens": args.quality_horizon, "ddim_steps": sampler.ddim_steps, **kw,
                "sampler": asdict(sampler), **stats[-1], "closest_distance": float(closest[i]),
                "batch_seconds": seconds}, device))
        means = {k: np.mean([st[k] for st in stats]) for k in stats[0]}
        print(f"  {name:32s} " + "  ".join(f"{k} {v:.2f}" for k, v in means.items()), flush=True)
    return rows, [*stats[0], "closest_distance"]


QUALITY_COLUMNS = {  # plan_stats keys -> (column, digits, as percent); other keys get their own name
    "end_distance": ("end distance to goal", 2, False), "closest_distance": ("closest distance", 2, False),
    "through_wall": ("plans through a wall", 0, True), "in_wall": ("states in walls", 1, True),
    "reached": ("end within the goal radius", 0, True), "dynamics_error": ("dynamics error (32 steps)", 3, False)}


def quality_table(rows: list[dict], keys: list[str]) -> str:
    """One line per variant; a column per statistic (`task.plan_stats`'s and the closest approach)."""
    keys = sorted(keys, key=lambda k: list(QUALITY_COLUMNS).index(k) if k in QUALITY_COLUMNS else len(QUALITY_COLUMNS))
    columns = [("n", lambda g: str(len(g)))]
    for k in keys:
        header, digits, pct = QUALITY_COLUMNS.get(k, (k, 2, False))
        columns.append((header, common.col_mean_se(k, digits, pct=pct)))
    return common.aggregate_table(rows, ["method", "guidance_scale", "mc_samples"], columns,
                                  key_headers=["variant", "guidance", "R"])


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    if args.part not in ("all", "latency", "quality"):
        raise common.ArgError(f"error: part must be all, latency or quality, got {args.part!r}")
    task, checkpoint = common.require_checkpoint(args)
    command = common.print_command()

    device = common.resolve_device(args.device)
    planner = load_planner(checkpoint, device=device)
    scale = planner.sampler.guidance_scale if args.guidance_scale < 0 else args.guidance_scale
    results = common.Results("planning", args, command)
    sections = []
    if args.part in ("all", "latency"):
        devices = [device] + (["cuda"] if args.cuda and torch.cuda.is_available() and device == "cpu" else [])
        rows = []
        for dev in devices:
            rows += latency(planner if dev == device else load_planner(checkpoint, device=dev), task, args, scale,
                            dev, results)
        sections.append(common.section(
            f"Planning latency, {task.name} (guidance scale {scale}, {args.plans} plans after {args.warmup} warm-up, "
            f"torch threads {torch.get_num_threads()})", latency_table(rows), command))
    if args.part in ("all", "quality"):
        rows, keys = quality(planner, task, args, scale, results)
        sections.append(common.section(
            f"Open-loop plan quality, {task.name}, H={args.quality_horizon} tokens from {args.quality_seeds} reset "
            f"states ({task.default_goal} goal; mean ± s.e. over start states)", quality_table(rows, keys), command))
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
