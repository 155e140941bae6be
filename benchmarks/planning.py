"""Planning benchmark of the DF planner: (a) latency per plan, (b) open-loop plan quality.

    python benchmarks/planning.py checkpoint=dfplan/checkpoints/pointmaze-umaze.pt env=pointmaze-umaze device=cpu
    python benchmarks/planning.py quick=true threads=1          # smoke test, < 1 minute on 2 cores

(a) Latency: median wall time of `DFPlanner.plan` over `plans` plans (after `warmup` plans) for every
    horizon (tokens) x DDIM steps x MC samples R x batch, guided with the checkpoint's tuned guidance scale
    (`load_checkpoint(path)["planner"]["sampler"]["guidance_scale"]`, else 1.0; `guidance_scale=` overrides).
    Also on CUDA when torch sees one (`cuda=false` to skip). Start states: env reset states, fixed goal.
(b) Quality: one plan of `quality_horizon` tokens from each env reset state (seeds 0..quality_seeds-1,
    goal="fixed") per variant (guidance on/off x MCG R=4/off x pyramid/full_sequence): distance from the
    planned end position to the goal, fraction of plans with a state inside a wall (`MazeLayout.in_wall`),
    fraction ending within 0.45 of the goal. Mean ± s.e. over start states.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

import common

DEFAULTS = {
    "checkpoint": None,  # default: the shipped checkpoint of env
    "env": "pointmaze-umaze",
    "device": "cpu",
    "cuda": True,  # also measure latency on CUDA when available
    "part": "all",  # all | latency | quality
    "horizons": [8, 16, 32, 64],
    "steps": [10, 20, 50],
    "mc": [1, 4],
    "batches": [1, 32],
    "plans": 20,
    "warmup": 2,
    "guidance_scale": -1.0,  # < 0: the checkpoint's tuned scale (else 1.0)
    "quality_seeds": 50,
    "quality_horizon": 32,
    "sample_seed": 0,
}
QUICK = {"horizons": [8, 32], "steps": [10], "mc": [1, 4], "batches": [1, 8], "plans": 5, "warmup": 1,
         "quality_seeds": 8}


def tuned_guidance(checkpoint) -> float:
    from dfplan.checkpoint import load_checkpoint

    sampler = load_checkpoint(checkpoint).get("planner", {}).get("sampler", {})
    return float(sampler.get("guidance_scale", 1.0))


def latency(planner, env: str, args, scale: float, device: str, results: common.Results) -> list[dict]:
    rows = []
    obs_all, goal_all = common.reset_states(env, range(max(args.batches)))
    configs = [(h, s, r, b) for h in args.horizons for s in args.steps for r in args.mc for b in args.batches]
    print(f"latency on {device}: {len(configs)} configs x ({args.warmup} warm-up + {args.plans} plans)", flush=True)
    for h, s, r, b in configs:
        obs = torch.as_tensor(obs_all[:b], device=device)
        goal = torch.as_tensor(goal_all[:b], device=device)
        gen = torch.Generator(device=device).manual_seed(args.sample_seed)
        kw = dict(steps=s, mc_samples=r, guidance_scale=scale)
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
        row = {"part": "latency", "env": env, "method": "df", "device": device, "horizon_tokens": h,
               "env_steps": h * planner.frame_stack, "ddim_steps": s, "mc_samples": r, "batch": b,
               "guidance_scale": scale, "schedule": planner.sampler.schedule, "plans": args.plans,
               "median_ms": statistics.median(times), "p10_ms": float(q[0]), "p90_ms": float(q[1]),
               "median_ms_per_plan_row": statistics.median(times) / b, "times_ms": times}
        rows.append(results.add(row, device))
        print(f"  H={h:3d} steps={s:3d} R={r} B={b:3d}: median {row['median_ms']:8.1f} ms", flush=True)
    return rows


def latency_table(rows: list[dict]) -> str:
    lines = [[r["device"], r["horizon_tokens"], r["env_steps"], r["ddim_steps"], r["mc_samples"], r["batch"],
              f"{r['median_ms']:.1f}", f"{r['p10_ms']:.1f}–{r['p90_ms']:.1f}", f"{r['median_ms_per_plan_row']:.2f}"]
             for r in rows]
    return common.markdown_table(["device", "H (tokens)", "env steps", "DDIM steps", "R", "batch", "median ms",
                                  "p10–p90 ms", "ms per plan row"], lines)


def variants(scale: float) -> list[tuple[str, dict]]:
    out = []
    for schedule in ("pyramid", "full_sequence"):
        out.append((f"{schedule} no-guidance", dict(schedule=schedule, guidance_scale=0.0, mc_samples=1)))
        out.append((f"{schedule} guided", dict(schedule=schedule, guidance_scale=scale, mc_samples=1)))
        out.append((f"{schedule} guided+MCG(R=4)", dict(schedule=schedule, guidance_scale=scale, mc_samples=4)))
    return out


def quality(planner, env: str, args, scale: float, results: common.Results) -> list[dict]:
    from dfplan.envs import MazeLayout, get_maze
    from dfplan.tasks.pointmaze import GOAL_RADIUS

    layout = MazeLayout(get_maze(env).maze_map)
    seeds = list(range(args.quality_seeds))
    obs, goals = common.reset_states(env, seeds, goal="fixed")
    device = str(planner.device)
    rows = []
    print(f"quality: {len(seeds)} start states x {len(variants(scale))} variants at H={args.quality_horizon}",
          flush=True)
    for name, kw in variants(scale):
        gen = torch.Generator(device=device).manual_seed(args.sample_seed)
        t0 = time.perf_counter()
        plan = planner.plan(torch.as_tensor(obs), torch.as_tensor(goals), args.quality_horizon, generator=gen, **kw)
        seconds = time.perf_counter() - t0
        states = plan.states.cpu().numpy()
        xy = states[..., :2]
        end = np.linalg.norm(xy[:, -1] - goals, axis=-1)
        closest = np.linalg.norm(xy - goals[:, None], axis=-1).min(axis=1)
        wall = common.outside_maze(layout, xy).any(axis=1)
        for i, seed in enumerate(seeds):
            rows.append(results.add({
                "part": "quality", "env": env, "method": name, "seed": seed, "horizon_tokens": args.quality_horizon,
                "ddim_steps": planner.sampler.steps, **kw, "end_distance": float(end[i]),
                "closest_distance": float(closest[i]), "in_wall": bool(wall[i]),
                "end_reached": bool(end[i] <= GOAL_RADIUS), "batch_seconds": seconds}, device))
        print(f"  {name:32s} end dist {end.mean():.2f}  in wall {wall.mean():.0%}  reached {np.mean(end <= GOAL_RADIUS):.0%}",
              flush=True)
    return rows


def quality_table(rows: list[dict]) -> str:
    return common.aggregate_table(rows, ["method", "guidance_scale", "mc_samples"], [
        ("n", lambda g: str(len(g))),
        ("end distance to goal", common.col_mean_se("end_distance", 2)),
        ("closest distance", common.col_mean_se("closest_distance", 2)),
        ("plans through a wall", common.col_mean_se("in_wall", 0, pct=True)),
        ("end within 0.45", common.col_mean_se("end_reached", 0, pct=True)),
    ], key_headers=["variant", "guidance", "R"])


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    if args.part not in ("all", "latency", "quality"):
        raise common.ArgError(f"error: part must be all, latency or quality, got {args.part!r}")
    command = common.print_command()
    from dfplan.df.planner import load_planner

    checkpoint = common.require_checkpoint(args)
    scale = tuned_guidance(checkpoint) if args.guidance_scale < 0 else args.guidance_scale
    results = common.Results("planning", args, command)
    device = common.resolve_device(args.device)
    sections = []
    if args.part in ("all", "latency"):
        devices = [device] + (["cuda"] if args.cuda and torch.cuda.is_available() and device == "cpu" else [])
        rows = []
        for dev in devices:
            rows += latency(load_planner(checkpoint, device=dev), args.env, args, scale, dev, results)
        sections.append(common.section(
            f"Planning latency, {args.env} (guidance scale {scale}, {args.plans} plans after {args.warmup} warm-up, "
            f"torch threads {torch.get_num_threads()})", latency_table(rows), command))
    if args.part in ("all", "quality"):
        planner = load_planner(checkpoint, device=device)
        rows = quality(planner, args.env, args, scale, results)
        sections.append(common.section(
            f"Open-loop plan quality, {args.env}, H={args.quality_horizon} tokens from {args.quality_seeds} reset states "
            f"(fixed goal; mean ± s.e. over start states)", quality_table(rows), command))
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(main())
