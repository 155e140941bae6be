"""DF vs Diffuser speed on this machine's CPU, in one run: per-plan latency and throughput (with FLOPs and the share of
the machine's matmul peak), what torch threads do to it, and closed-loop times per decision and per episode.

    python benchmarks/speed.py threads=1                            # everything, U-Maze, shipped checkpoints
    python benchmarks/speed.py quick=true threads=1                 # smoke test, < 1 minute on 2 cores
    python benchmarks/speed.py parts=plans horizons=16,32 ddim_steps=3 batches=1,64
    python benchmarks/speed.py checkpoint=runs/umaze/final.pt diffuser_checkpoint=PATH

Checkpoints: `checkpoint=` (or `df_checkpoint=`; a path or a shipped name), else the one the task (`env`) ships of
`variant` (none = the task's default); `diffuser_checkpoint=`, else the task's shipped Diffuser
(`pointmaze-umaze-diffuser`), else the Diffuser rows are skipped with a note. Everything runs on the CPU; nothing here
measures a GPU.
Parts (`parts=`):
- plans: ms per plan, the median of `plans` calls after `warmup`, from env reset states (seeds 0..batch-1):
  DF `DFPlanner.plan` for every horizon (tokens) x DDIM steps x batch, guided as shipped (the checkpoint's guidance
  scale and objective); Diffuser `DiffuserPlanner.plan` (its fixed trajectory, its DDPM steps) for `diffuser_batches`.
  plans/s = batch / seconds per plan. FLOPs per plan: `torch.utils.flop_counter.FlopCounterMode` (matmuls and
  convolutions, the guidance backward included) at batch 1 and 2, extended linearly to the batch (every op's count
  is affine in the batch). GFLOP/s achieved and its share of the peak: the median rate of `peak_reps` fp32
  2048 x 2048 matmuls, measured before and after the table in the same run at the same thread count (the higher
  one is used; the title gives both).
- threads: ms per plan at the shipped settings for `thread_batches` x torch threads 1..cpu count, the thread counts
  interleaved (one untimed plan after each switch). On a machine whose cores are busy with other work, more than one
  thread can cost 10-100x: idle OpenMP workers spin for the cores the other processes need (`threads=1`, or
  OMP_WAIT_POLICY=PASSIVE, avoids it). The library leaves the thread count to the caller.
- profile: where a DF plan's time goes (`torch.profiler`, self CPU time per op over `plans` plans, every horizon x
  DDIM steps x batch): the matmuls' share (addmm, mm, bmm: where the FLOPs are) and the top ops. Not in the default
  parts (the profiler's own overhead inflates the small ops).
- loop: DF (the MPC controller with its tuned settings) and `diffuser_modes`, built by
  `dfplan.controllers.make_controller` like `dfplan-eval`: ms per decision of `controller.act` on single observations
  over one episode per seed (replans included), plans per episode, and episodes per minute of
  `dfplan.evaluation.evaluate` for `episodes` episodes as one batch, with the task's score (reference scores from
  `dfplan.run.reference_scores`). Mean ± s.e. over `seeds`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from dfplan.controllers import DIFFUSER_MODES, make_controller
from dfplan.diffuser.planner import load_diffuser
from dfplan.evaluation import run_episodes
from dfplan.registry import load_planner
from dfplan.run import reference_scores

import common

DEFAULTS = {
    "env": None,  # task; default: the checkpoint's, else pointmaze-umaze
    "checkpoint": None,  # DF: a path or a shipped name; default: the task's shipped one of `variant`
    "df_checkpoint": None,  # the older name of `checkpoint`
    "variant": None,
    "device": "cpu",  # the only one: this script measures the CPU
    "diffuser_checkpoint": None,  # default: the task's shipped Diffuser, if any
    "parts": ["plans", "threads", "loop"],
    "horizons": [16, 32, 64],
    "ddim_steps": [3, 10],
    "batches": [1, 64, 256],
    "diffuser_batches": [1, 64],
    "plans": 5,
    "diffuser_plans": 3,
    "warmup": 1,
    "peak_reps": 5,
    "thread_batches": [1, 64],
    "thread_plans": 5,
    "diffuser_modes": ["diffuser", "diffuser-replan"],
    "goal": None,  # goal protocol; default: the task's
    "seeds": 3,
    "episodes": 4,  # evaluate() episodes for episodes/minute (batch = episodes)
    "max_episode_steps": 0,  # 0 = the env's own
}
QUICK = {"horizons": [16], "ddim_steps": [3], "batches": [1, 64], "diffuser_batches": [1], "plans": 3,
         "diffuser_plans": 1, "peak_reps": 3, "thread_batches": [1], "thread_plans": 3, "diffuser_modes": ["diffuser"],
         "seeds": 1, "episodes": 2, "max_episode_steps": 100}
PARTS = ("plans", "threads", "loop", "profile")
MATMULS = ("aten::addmm", "aten::mm", "aten::bmm")  # where the FLOPs are; every other op is overhead around them
PEAK_N = 2048


# --- the machine ---------------------------------------------------------------------------------------------------
def cpu_name() -> str:
    """`platform.processor()`, else the model name Linux reports, else the architecture."""
    name = platform.processor()
    if not name or name == platform.machine():
        try:
            with open("/proc/cpuinfo") as f:
                name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
        except OSError:
            pass
    return name or platform.machine()


def machine_label() -> str:
    threads = torch.get_num_threads()
    return f"{cpu_name()}, {os.cpu_count()} CPUs, {threads} torch thread{'s' if threads > 1 else ''}"


def peak_gflops(reps: int, n: int = PEAK_N) -> float:
    """Median GFLOP/s of fp32 n x n matmuls at the current thread count (one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


# --- per plan ------------------------------------------------------------------------------------------------------
_INPUTS: dict = {}


def inputs_cache(task, batch: int, goal: str | None):
    """(obs, goals) of the reset states of seeds 0..batch-1, made once per batch (env resets are not what is timed)."""
    if (batch, goal) not in _INPUTS:
        obs, goals = common.reset_states(task, range(batch), goal=goal)
        _INPUTS[(batch, goal)] = torch.as_tensor(obs), torch.as_tensor(goals)
    return _INPUTS[(batch, goal)]


def time_plans(once, plans: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        once()
    times = []
    for _ in range(plans):
        t0 = time.perf_counter()
        once()
        times.append(1000 * (time.perf_counter() - t0))
    return times


def flops_per_plan(plan_at) -> tuple[float, float]:
    """(FLOPs at batch 1, FLOPs per extra batch row) of `plan_at(batch)`, counted at batches 1 and 2."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for b in (1, 2):
        with FlopCounterMode(display=False) as counter:
            plan_at(b)
        counts.append(counter.get_total_flops())
    return counts[0], counts[1] - counts[0]


def plan_rows(task, df, diffuser, args, results) -> list[dict]:
    rows = []
    goal = args.goal
    print(f"per plan on {machine_label()}: DF {len(args.horizons) * len(args.ddim_steps) * len(args.batches)} "
          f"configs, Diffuser {len(args.diffuser_batches) if diffuser else 0}", flush=True)
    for h in args.horizons:
        for s in args.ddim_steps:
            flops = flops_per_plan(lambda b: df.plan(*inputs_cache(task, b, goal), h, ddim_steps=s))  # noqa: B023
            for b in args.batches:
                gen = torch.Generator().manual_seed(0)
                obs, goals = inputs_cache(task, b, goal)
                times = time_plans(lambda: df.plan(obs, goals, h, generator=gen, ddim_steps=s), args.plans,
                                   args.warmup)
                sampler = asdict(df.sampler) | {"ddim_steps": s}
                rows.append(results.add(plan_row("df", h, h * df.frame_stack, s, b, times, flops, sampler), "cpu"))
                report(rows[-1])
    if diffuser is not None:
        flops = flops_per_plan(lambda b: diffuser.plan(*inputs_cache(task, b, goal)))
        steps = diffuser.model.cfg.n_diffusion_steps
        for b in args.diffuser_batches:
            obs, goals = inputs_cache(task, b, goal)
            gen = torch.Generator().manual_seed(0)
            times = time_plans(lambda: diffuser.plan(obs, goals, generator=gen), args.diffuser_plans, args.warmup)
            rows.append(results.add(plan_row("diffuser", None, diffuser.horizon - 1, steps, b, times, flops, None),
                                    "cpu"))
            report(rows[-1])
    return rows


def plan_row(method, tokens, env_steps, steps, batch, times, flops, sampler) -> dict:
    ms = statistics.median(times)
    q = np.percentile(times, [10, 90])
    gflop = (flops[0] + flops[1] * (batch - 1)) / 1e9
    return {"part": "plans", "method": method, "device": "cpu", "cpu": cpu_name(), "horizon_tokens": tokens,
            "env_steps": env_steps, "denoising_steps": steps, "batch": batch, "plan_ms": ms, "p10_ms": float(q[0]),
            "p90_ms": float(q[1]), "plans_per_s": 1000 * batch / ms, "gflop_per_plan": gflop,
            "gflops": gflop / (ms / 1000), "times_ms": times, "sampler": sampler}


def report(row: dict) -> None:
    h = f"H={row['horizon_tokens']:>3}" if row["horizon_tokens"] else f"{row['env_steps']} steps"
    print(f"  {row['method']:8s} {h:>9s} steps={row['denoising_steps']:>3} B={row['batch']:>4}: "
          f"{row['plan_ms']:9.1f} ms/plan  {row['plans_per_s']:8.1f} plans/s  {row['gflop_per_plan']:8.2f} GFLOP  "
          f"{row['gflops']:6.1f} GFLOP/s", flush=True)


def plans_table(rows: list[dict], peak: float) -> str:
    label = machine_label()
    lines = [[r["method"], r["horizon_tokens"] or "–", r["env_steps"], r["denoising_steps"], r["batch"],
              f"{r['plan_ms']:.1f}", f"{r['p10_ms']:.1f}–{r['p90_ms']:.1f}", f"{r['plans_per_s']:.1f}",
              f"{r['gflop_per_plan']:.3g}", f"{r['gflops']:.1f}", f"{100 * r['gflops'] / peak:.0f}%"]
             for r in rows]
    return common.markdown_table(["method", "H (tokens)", "env steps", "DDIM / DDPM steps", "batch",
                                  f"ms / plan ({label})", "p10–p90 ms", f"plans / s ({label})", "GFLOP / plan",
                                  "GFLOP/s", "% of matmul peak"], lines)


# --- profile -------------------------------------------------------------------------------------------------------
def profile_rows(task, df, args, results) -> list[dict]:
    """Where a batched plan's time goes: `torch.profiler` self CPU time per op over `plans` DF plans (after
    `warmup`) for every horizon x DDIM steps x batch; the matmuls' share and the top ops."""
    from torch.profiler import ProfilerActivity, profile

    rows = []
    for h in args.horizons:
        for s in args.ddim_steps:
            for b in args.batches:
                obs, goals = inputs_cache(task, b, args.goal)
                gen = torch.Generator().manual_seed(0)
                once = lambda: df.plan(obs, goals, h, generator=gen, ddim_steps=s)  # noqa: E731
                for _ in range(args.warmup):
                    once()
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(args.plans):
                        once()
                ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
                total = sum(e.self_cpu_time_total for e in ops)
                share = {e.key: e.self_cpu_time_total / total for e in ops[:10]}
                matmul = sum(e.self_cpu_time_total for e in ops if e.key in MATMULS) / total
                row = {"part": "profile", "method": "df", "device": "cpu", "cpu": cpu_name(), "horizon_tokens": h,
                       "denoising_steps": s, "batch": b, "matmul_share": matmul, "top_ops": share,
                       "ops_per_plan": sum(e.count for e in ops) / args.plans}
                rows.append(results.add(row, "cpu"))
                top = ", ".join(f"{k.removeprefix('aten::')} {100 * v:.0f}%" for k, v in list(share.items())[:6])
                print(f"  df H={h:>3} steps={s:>3} B={b:>4}: matmuls {100 * matmul:.0f}% of the time; {top}",
                      flush=True)
    return rows


def profile_table(rows: list[dict]) -> str:
    lines = [[r["horizon_tokens"], r["denoising_steps"], r["batch"], f"{100 * r['matmul_share']:.0f}%",
              f"{r['ops_per_plan']:.0f}", ", ".join(f"{k.removeprefix('aten::')} {100 * v:.0f}%"
                                                   for k, v in list(r["top_ops"].items())[:6])] for r in rows]
    return common.markdown_table(["H (tokens)", "DDIM steps", "batch", "matmul share of CPU time", "ops / plan call",
                                  "top ops (self CPU time)"], lines)


# --- threads -------------------------------------------------------------------------------------------------------
def thread_rows(task, df, args, results) -> list[dict]:
    """ms per plan at the shipped settings for torch threads 1..cpu count, interleaved; the thread count restored."""
    before = torch.get_num_threads()
    counts = list(range(1, (os.cpu_count() or 1) + 1))
    rows = []
    try:
        for b in args.thread_batches:
            obs, goals = inputs_cache(task, b, args.goal)
            gen = torch.Generator().manual_seed(0)
            times = {n: [] for n in counts}
            for rep in range(args.thread_plans):
                for n in (counts if rep % 2 == 0 else counts[::-1]):
                    torch.set_num_threads(n)
                    df.plan(obs, goals, generator=gen)  # untimed: the first plan after a switch
                    times[n] += time_plans(lambda: df.plan(obs, goals, generator=gen), 1, 0)
            for n in counts:
                row = {"part": "threads", "method": "df", "device": "cpu", "cpu": cpu_name(), "batch": b,
                       "threads": n, "plan_ms": statistics.median(times[n]), "times_ms": times[n],
                       "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
                rows.append(results.add(row, "cpu"))
                print(f"  threads={n} B={b:>4}: {row['plan_ms']:9.1f} ms/plan", flush=True)
    finally:
        torch.set_num_threads(before)
    return rows


def threads_table(rows: list[dict]) -> str:
    lines = [[r["batch"], r["threads"], f"{r['plan_ms']:.1f}", f"{min(r['times_ms']):.1f}–{max(r['times_ms']):.1f}",
              f"{r['load_avg']:.1f}" if r["load_avg"] is not None else "–"] for r in rows]
    return common.markdown_table(["batch", "torch threads", f"ms / plan ({cpu_name()}, {os.cpu_count()} CPUs)",
                                  "min–max ms", "load average"], lines)


# --- closed loop ---------------------------------------------------------------------------------------------------
def plans_made(controller) -> int:
    return getattr(controller, "plans_made", getattr(controller, "n_plans", 0))


def decision_times(controller, task, goal, seed: int, max_steps: int | None) -> dict:
    env = task.make_env(goal=goal, max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed)
    steps = env.spec.max_episode_steps
    if hasattr(controller, "max_episode_steps"):
        controller.max_episode_steps = steps
    controller.reset(seed=seed)
    before = plans_made(controller)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        action = controller.act(obs)
        times.append(1000 * (time.perf_counter() - t0))
        obs, *_ = env.step(action)
    env.close()
    return {"decision_ms": float(np.mean(times)), "decision_ms_median": statistics.median(times),
            "decision_ms_max": float(np.max(times)), "episode_steps": steps,
            "plans_per_episode": plans_made(controller) - before}


def loop_rows(task, methods, args, results) -> list[dict]:
    max_steps = args.max_episode_steps or None
    rows = []
    for method, ckpt in methods:
        controller = make_controller(method, task, ckpt, device="cpu")
        ref = reference_scores(task, controller)
        settings = common.controller_settings(controller)
        for seed in range(args.seeds):
            row = {"part": "loop", "env": task.name, "goal": args.goal, "method": method, "seed": seed,
                   "device": "cpu", "checkpoint": str(ckpt), "settings": settings}
            row.update(decision_times(controller, task, args.goal, seed, max_steps))
            res = run_episodes(controller, task, goal=args.goal, episodes=args.episodes, seed=1000 * seed,
                               batch=args.episodes, progress=False, max_episode_steps=max_steps)
            s = res.summary(task, ref)
            row.update(episodes_per_minute=s["episodes_per_minute"], eval_seconds=s["seconds"],
                       eval_episodes=s["episodes"], score=s["score_mean"], score_name=s["score_name"],
                       success_rate=s["success_rate"])
            rows.append(results.add(row, "cpu"))
            print(f"  {method} seed {seed}: {row['decision_ms']:.2f} ms/decision ({row['plans_per_episode']} plans), "
                  f"{row['episodes_per_minute']:.1f} episodes/min", flush=True)
    return rows


def loop_table(rows: list[dict], episodes: int) -> str:
    return common.aggregate_table(rows, ["method"], [
        (f"ms / decision ({machine_label()})", common.col_mean_se("decision_ms", 2)),
        ("plans / episode", common.col_mean_se("plans_per_episode", 0)),
        (f"episodes / min ({episodes} batched)", common.col_mean_se("episodes_per_minute", 1)),
        (rows[0]["score_name"] if rows else "score", common.col_mean_se("score", 1)),
        ("success", common.col_mean_se("success_rate", 0, pct=True)),
    ], key_headers=["method"])


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)

    bad = [p for p in args.parts if p not in PARTS] + [m for m in args.diffuser_modes if m not in DIFFUSER_MODES]
    if bad:
        raise common.ArgError(f"error: unknown {bad}; parts: {list(PARTS)}, diffuser_modes: {sorted(DIFFUSER_MODES)}")
    if args.device != "cpu":
        raise common.ArgError(f"error: speed.py measures the CPU (device=cpu), got device={args.device}; for CUDA "
                              f"latency see benchmarks/planning.py device=cuda")
    if args.df_checkpoint and not args.checkpoint:
        args["checkpoint"] = args.df_checkpoint
    task, df_ckpt = common.require_checkpoint(args)
    args["goal"] = task.check_goal(args.goal)
    diff_ckpt = common.default_checkpoint(task, args.diffuser_checkpoint, "diffuser")
    args["diffuser_checkpoint"] = diff_ckpt and str(diff_ckpt)
    command = common.print_command()

    note = None
    if diff_ckpt is None:
        note = (f"note: no Diffuser checkpoint for {task.name} (none shipped, none given): Diffuser rows skipped; "
                f"train one with `dfplan-train env={task.name} model=diffuser train=diffuser_cpu` and pass "
                f"diffuser_checkpoint=PATH")
        print(note, flush=True)
    results = common.Results("speed", args, command)
    df = load_planner(df_ckpt, device="cpu")
    sections = []
    if "plans" in args.parts:
        peaks = [peak_gflops(args.peak_reps)]
        diffuser = load_diffuser(diff_ckpt, device="cpu") if diff_ckpt is not None else None
        rows = plan_rows(task, df, diffuser, args, results)
        peaks.append(peak_gflops(args.peak_reps))
        results.add({"part": "peak", "device": "cpu", "cpu": cpu_name(), "matmul_n": PEAK_N,
                     "peak_gflops_before": peaks[0], "peak_gflops_after": peaks[1]}, "cpu")
        sc = df.sampler
        sections.append(common.section(
            f"Per plan, {task.name}, CPU ({machine_label()}): DF guided as shipped (scale {sc.guidance_scale}, "
            f"{df.settings.controller.objective or task.objectives[0]} objective, {sc.schedule} schedule), Diffuser "
            f"as trained; median of {args.plans} (Diffuser {args.diffuser_plans}) plans after {args.warmup} warm-up; "
            f"matmul peak {max(peaks):.0f} GFLOP/s (fp32 {PEAK_N}^3: {peaks[0]:.0f} before, {peaks[1]:.0f} after)",
            plans_table(rows, max(peaks)), command, note))
    if "threads" in args.parts:
        rows = thread_rows(task, df, args, results)
        sections.append(common.section(
            f"Torch threads, {task.name} DF at the shipped settings (H={df.default_horizon}, {df.sampler.ddim_steps} "
            f"DDIM steps, guided), CPU; median of {args.thread_plans} plans per thread count, interleaved",
            threads_table(rows), command))
    if "profile" in args.parts:
        rows = profile_rows(task, df, args, results)
        sections.append(common.section(
            f"Where a plan's CPU time goes, {task.name} DF guided as shipped, torch.profiler over {args.plans} plans "
            f"({machine_label()})", profile_table(rows), command))
    if "loop" in args.parts:
        methods = [("df", df_ckpt)] + ([(m, diff_ckpt) for m in args.diffuser_modes] if diff_ckpt else [])
        rows = loop_rows(task, methods, args, results)
        sections.append(common.section(
            f"Closed loop, {task.name} ({args.goal} goal), CPU; mean ± s.e. over {args.seeds} seeds",
            loop_table(rows, args.episodes), command, note))
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
