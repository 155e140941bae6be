"""Long causal rollouts of the DF model, with and without Diffusion Forcing's stabilization.

    python benchmarks/rollout_stability.py env=pointmaze-umaze variant=d4rl
    python benchmarks/rollout_stability.py checkpoint=runs/umaze/final.pt   # env: the task the checkpoint was made for
    python benchmarks/rollout_stability.py quick=true threads=1           # smoke test, < 1 minute on 2 cores

Checkpoint: `checkpoint=` (a path or a shipped name), else the one the task (`env`, default pointmaze-umaze)
ships of `variant` (none = the task's default, e.g. dwell; the committed results used the D4RL-recipe one,
variant=d4rl). Needs a maze task (one with a `layout`: walls to stay out of); states are [x, y, vx, vy].
`DFPlanner.rollout` samples token after token, unguided, for `multiples` x the training window
(`load_checkpoint(path)["config"]["train"]["window_steps"]` env steps = window_steps / frame_stack tokens),
from `rollouts` start states: the task's env reset states (`starts=reset`, seeds 0..rollouts-1) or observations
drawn from the checkpoint's dataset (`starts=dataset`). Variants: `stabilize=True` (finished tokens fed back at the
stabilization noise level) and `stabilize=False` (fed back clean). `seeds` repeats everything with different
sampling noise; tables show mean ± s.e. over those seeds.

Reported per variant:
- the fraction of rollouts whose positions never entered a wall (or left the maze, or became NaN) up to
  1x, 2x, 5x, 10x the window;
- per window-length chunk: mean |velocity| (per component), std of positions and of velocities, each
  compared with the dataset's (the checkpoint's normalizer shift/scale are the dataset's mean/std; the dataset's
  mean |v| is computed from the data with `dataset_stats=true`, else the Gaussian value sigma * sqrt(2/pi)).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from dfplan.checkpoint import load_checkpoint
from dfplan.data import episodes_as_arrays, load_minari
from dfplan.registry import load_planner

import common

DEFAULTS = {
    "checkpoint": None,  # a path or a shipped name; default: the shipped checkpoint of env (of variant)
    "env": None,  # task; default: the checkpoint's, else pointmaze-umaze
    "variant": None,  # shipped DF checkpoint variant (dwell | d4rl for PointMaze); default: the task's
    "device": "cpu",
    "rollouts": 64,
    "multiples": 10,  # rollout length in training windows
    "report_at": [1, 2, 5, 10],  # multiples of the window at which the inside-the-maze fraction is reported
    "seeds": 3,
    "starts": "reset",  # reset | dataset
    "dataset_stats": True,  # load the dataset for its exact mean |v| (else Gaussian approximation)
    "ddim_steps": 0,  # 0 = the checkpoint's sampler steps
}
QUICK = {"rollouts": 16, "seeds": 2, "dataset_stats": False}


def dataset_observations(dataset_id: str) -> np.ndarray:
    return np.concatenate([obs for obs, _ in episodes_as_arrays(load_minari(dataset_id))])


def main() -> None:
    args = common.parse_args(DEFAULTS, QUICK, __doc__)
    if args.starts not in ("reset", "dataset"):
        raise common.ArgError(f"error: starts must be reset or dataset, got {args.starts!r}")
    task, checkpoint = common.require_checkpoint(args)
    layout = getattr(task, "layout", None)
    if layout is None:
        raise common.ArgError(f"error: rollout_stability measures rollouts against a maze's walls; {task.name} has "
                              f"no maze layout")
    command = common.print_command()

    ckpt = load_checkpoint(checkpoint)
    device = common.resolve_device(args.device)
    planner = load_planner(checkpoint, device=device)
    fs = planner.frame_stack
    window = int(ckpt["config"]["train"]["window_steps"])
    window_tokens = max(1, window // fs)
    window = window_tokens * fs
    n_tokens = args.multiples * window_tokens
    report_at = [m for m in args.report_at if m <= args.multiples]

    nz = ckpt["normalizer"]
    pos_mean, pos_std = nz["obs_shift"][:2].numpy(), nz["obs_scale"][:2].numpy()
    vel_std = nz["obs_scale"][2:4].numpy()
    data_obs = None
    if args.starts == "dataset" or args.dataset_stats:
        t0 = time.perf_counter()
        data_obs = dataset_observations(ckpt["dataset_id"])
        print(f"loaded {len(data_obs)} observations of {ckpt['dataset_id']} in {time.perf_counter() - t0:.1f} s")
    if data_obs is not None and args.dataset_stats:
        data_abs_v, abs_v_source = float(np.abs(data_obs[:, 2:4]).mean()), "dataset"
    else:
        data_abs_v, abs_v_source = float((vel_std * math.sqrt(2 / math.pi)).mean()), "Gaussian approx."
    print(f"rollouts of {n_tokens} tokens = {n_tokens * fs} env steps ({args.multiples} x window of {window} steps), "
          f"{args.rollouts} starts x {args.seeds} seeds x 2 variants", flush=True)

    results = common.Results("rollout_stability", args, command)
    rows = []
    for seed in range(args.seeds):
        if args.starts == "reset":
            obs0, _ = common.reset_states(task, range(seed * args.rollouts, (seed + 1) * args.rollouts))
        else:
            obs0 = data_obs[np.random.default_rng(seed).integers(0, len(data_obs), args.rollouts)]
        for stabilize in (True, False):
            gen = torch.Generator(device=device).manual_seed(seed)
            t0 = time.perf_counter()
            plan = planner.rollout(torch.as_tensor(obs0), n_tokens, stabilize=stabilize, generator=gen,
                                   steps=args.ddim_steps or None)
            seconds = time.perf_counter() - t0
            states = plan.states.cpu().numpy()  # [N, n_tokens*fs + 1, 4]
            out = common.outside_maze(layout, states[..., :2])  # [N, T+1]
            inside = {f"inside_{m}x": float((~out[:, : m * window + 1].any(axis=1)).mean()) for m in report_at}
            chunks = []
            for c in range(args.multiples):
                s = states[:, 1 + c * window: 1 + (c + 1) * window]
                s = s[np.isfinite(s).all(-1)]
                chunks.append({
                    "chunk": c + 1, "mean_abs_v": float(np.abs(s[:, 2:4]).mean()) if len(s) else None,
                    "pos_mean": s[:, :2].mean(0).tolist() if len(s) else None,
                    "pos_std": s[:, :2].std(0).tolist() if len(s) else None,
                    "vel_std": s[:, 2:4].std(0).tolist() if len(s) else None,
                    "pos_std_ratio": float((s[:, :2].std(0) / pos_std).mean()) if len(s) else None,
                    "vel_std_ratio": float((s[:, 2:4].std(0) / vel_std).mean()) if len(s) else None,
                    "abs_v_ratio": float(np.abs(s[:, 2:4]).mean() / data_abs_v) if len(s) else None,
                    "nonfinite_fraction": float(
                        1 - np.isfinite(states[:, 1 + c * window: 1 + (c + 1) * window]).all(-1).mean()),
                })
            row = results.add({
                "env": task.name, "method": "stabilized" if stabilize else "clean feedback", "stabilize": stabilize,
                "seed": seed, "starts": args.starts, "rollouts": args.rollouts, "window_steps": window,
                "tokens": n_tokens, "env_steps": n_tokens * fs, "seconds": seconds, **inside,
                "exited_fraction": float(out.any(1).mean()),
                "first_exit_step_median": float(np.median(out.argmax(1)[out.any(1)])) if out.any() else None,
                "chunks": chunks, "dataset_pos_mean": pos_mean.tolist(), "dataset_pos_std": pos_std.tolist(),
                "dataset_vel_std": vel_std.tolist(), "dataset_mean_abs_v": data_abs_v,
                "dataset_mean_abs_v_source": abs_v_source}, device)
            rows.append(row)
            shares = " ".join(f"{m}x {inside[f'inside_{m}x']:.0%}" for m in report_at)
            print(f"  seed {seed} stabilize={stabilize!s:5}: inside {shares}  ({seconds:.1f} s)", flush=True)

    inside_table = common.aggregate_table(rows, ["method"], [
        (f"inside at {m}x ({m * window} steps)", common.col_mean_se(f"inside_{m}x", 0, pct=True)) for m in report_at
    ] + [("left the maze by the end", common.col_mean_se("exited_fraction", 0, pct=True)),
         ("median first exit step (of those)", common.col_mean_se("first_exit_step_median", 0))],
        key_headers=["variant"])

    chunk_rows = [{"method": r["method"], "seed": r["seed"], **ch} for r in rows for ch in r["chunks"]]
    for ch in chunk_rows:
        ch["pos_std_x"], ch["pos_std_y"] = (ch["pos_std"] or [None, None])
    show = sorted({1, 2, args.multiples // 2, args.multiples} & set(range(1, args.multiples + 1)))
    drift_rows = [r for r in chunk_rows if r["chunk"] in show]
    drift_table = common.aggregate_table(drift_rows, ["method", "chunk"], [
        ("mean abs v", common.col_mean_se("mean_abs_v", 3)),
        ("abs v / dataset", common.col_mean_se("abs_v_ratio", 2)),
        ("pos std x", common.col_mean_se("pos_std_x", 3)),
        ("pos std y", common.col_mean_se("pos_std_y", 3)),
        ("pos std / dataset", common.col_mean_se("pos_std_ratio", 2)),
        ("vel std / dataset", common.col_mean_se("vel_std_ratio", 2)),
        ("non-finite", common.col_mean_se("nonfinite_fraction", 1, pct=True)),
    ], key_headers=["variant", "chunk (windows)"])
    ref = (f"Dataset: mean abs v {data_abs_v:.3f} ({abs_v_source}), pos std {[round(float(x), 3) for x in pos_std]}, "
           f"vel std {[round(float(x), 3) for x in vel_std]} (checkpoint normalizer). Chunk c covers env steps "
           f"{window}(c-1)+1 .. {window}c of the rollout.")
    sections = [
        common.section(f"Rollouts staying inside the maze, {task.name}: {args.rollouts} {args.starts} starts, "
                       f"{n_tokens} tokens; mean ± s.e. over {args.seeds} seeds", inside_table, command),
        common.section(f"Drift of state statistics per window-length chunk, {task.name}", drift_table, command, ref),
    ]
    print()
    print("\n".join(sections))
    print(f"appended {len(results.rows)} rows to {results.path}")


if __name__ == "__main__":
    sys.exit(common.user_errors_as_exit(main))
