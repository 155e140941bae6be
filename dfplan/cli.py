"""Console entry points: thin Hydra mains. Each accepts `key=value` overrides and `--help`."""

from __future__ import annotations

import sys
import time

import hydra
from omegaconf import DictConfig

CONFIGS = "pkg://dfplan.configs"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


@hydra.main(config_path=CONFIGS, config_name="data", version_base=None)
def data_main(cfg: DictConfig) -> None:
    """dfplan-data env=pointmaze-umaze [steps=N seed=S overwrite=true maze_map=[[...]]]"""
    from dfplan.envs import custom_maze, get_maze
    from dfplan.envs.recipes import default_dataset_id, generate_pointmaze_dataset

    try:
        if cfg.maze_map is not None:
            spec = custom_maze([list(r) for r in cfg.maze_map], goal_cell=cfg.goal_cell,
                               max_episode_steps=cfg.max_episode_steps, name=cfg.env)
        else:
            spec = get_maze(cfg.env)
        dataset_id = cfg.dataset_id or default_dataset_id(spec.name, int(cfg.dwell))
        t0 = time.perf_counter()
        ds = generate_pointmaze_dataset(spec, steps=int(cfg.steps), seed=int(cfg.seed), dataset_id=dataset_id,
                                        overwrite=bool(cfg.overwrite), ref_episodes=int(cfg.ref_episodes),
                                        dwell=int(cfg.dwell), progress=bool(cfg.progress))
    except (ValueError, FileExistsError) as err:
        _fail(str(err))
    seconds = time.perf_counter() - t0
    meta = ds.storage.metadata
    print(f"wrote {dataset_id}: {ds.total_steps} steps, {ds.total_episodes} episodes in {seconds:.1f} s "
          f"({ds.total_steps / seconds:,.0f} steps/s); ref_min_score={meta['ref_min_score']:.2f} "
          f"ref_max_score={meta['ref_max_score']:.2f}; at {ds.spec.data_path}")


def _with_default_dataset(cfg: DictConfig) -> DictConfig:
    from omegaconf import open_dict

    from dfplan.envs.recipes import default_dataset_id

    if cfg.get("dataset") is None:
        with open_dict(cfg):
            cfg.dataset = default_dataset_id(cfg.env)
    return cfg


@hydra.main(config_path=CONFIGS, config_name="train", version_base=None)
def train_main(cfg: DictConfig) -> None:
    """dfplan-train env=pointmaze-umaze [train=cpu|gpu model=df_rnn train.steps=N out=DIR resume=true]"""
    from dfplan.checkpoint import CheckpointError
    from dfplan.data import DatasetNotFoundError
    from dfplan.training import train

    try:
        train(_with_default_dataset(cfg))
    except (DatasetNotFoundError, CheckpointError, FileExistsError, ValueError) as err:
        _fail(str(err))


def _checkpoint_for(cfg: DictConfig, planner: str = "df"):
    from dfplan.control.factory import shipped_checkpoint

    return cfg.checkpoint if cfg.get("checkpoint") else shipped_checkpoint(cfg.env, planner)


def _sampler_overrides(cfg: DictConfig) -> dict:
    keys = ("guidance_scale", "mc_samples", "steps", "schedule", "warm_start_step")
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


def _git_commit() -> str | None:
    import subprocess
    from pathlib import Path

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_evaluation(cfg: DictConfig, print_episodes: bool = False) -> dict:
    """Evaluate per `cfg` (the eval config); returns the summary dict that dfplan-eval prints as JSON."""
    from dfplan.checkpoint import load_checkpoint
    from dfplan.control.factory import make_controller
    from dfplan.evaluation import evaluate
    from dfplan.evaluation.plots import plot_paths
    from dfplan.envs import MazeLayout, get_maze

    checkpoint = _checkpoint_for(cfg, cfg.get("variant", "df") if cfg.planner == "df" else "diffuser")
    controller = make_controller(cfg.planner, checkpoint, device=cfg.device, horizon=cfg.get("horizon"),
                                 replan_every=cfg.get("replan_every"), memory=cfg.get("memory"),
                                 objective=cfg.get("objective"), env=cfg.env, memory_tokens=cfg.get("memory_tokens"),
                                 **_sampler_overrides(cfg))
    ref = load_checkpoint(checkpoint).get("ref_scores")
    result = evaluate(controller, cfg.env, goal=cfg.goal, episodes=int(cfg.episodes), seed=int(cfg.seed),
                      batch=int(cfg.batch), ref_scores=tuple(ref) if ref and None not in ref else None,
                      keep_plans=6 if cfg.get("plot") else 0, progress=bool(cfg.get("progress", True)),
                      max_episode_steps=cfg.get("max_episode_steps"))
    if print_episodes:
        norm = result.normalized() if result.ref_min is not None else [float("nan")] * len(result.episodes)
        for ep, score in zip(result.episodes, norm):
            ttg = "never" if ep.time_to_goal is None else f"step {ep.time_to_goal}"
            print(f"episode seed={ep.seed}: return {ep.ret:5.0f}  normalized {score:6.1f}  reached goal: {ttg}")
    if cfg.get("plot"):
        layout = MazeLayout(get_maze(cfg.env).maze_map)
        plot_paths(layout, result.episodes, cfg.plot, title=f"{cfg.planner} on {cfg.env} ({cfg.goal} goal)")
    if cfg.get("video"):
        from dfplan.evaluation.video import record_video

        record_video(controller, cfg.env, cfg.goal, int(cfg.seed), cfg.video)
    summary = {"env": cfg.env, "planner": cfg.planner, "goal": cfg.goal, "seed": int(cfg.seed),
               "checkpoint": str(checkpoint), **result.summary(), "commit": _git_commit()}
    return summary


@hydra.main(config_path=CONFIGS, config_name="eval", version_base=None)
def eval_main(cfg: DictConfig) -> None:
    """dfplan-eval env=pointmaze-umaze planner=df|diffuser|diffuser-replan|diffuser-actions episodes=N goal=fixed|random"""
    import json

    from dfplan.checkpoint import CheckpointError

    try:
        summary = run_evaluation(cfg)
    except (CheckpointError, ValueError) as err:
        _fail(str(err))
    line = json.dumps(summary)
    if cfg.get("results"):
        with open(cfg.results, "a") as f:
            f.write(line + "\n")
    print(line)


@hydra.main(config_path=CONFIGS, config_name="plan", version_base=None)
def plan_main(cfg: DictConfig) -> None:
    """dfplan-plan env=pointmaze-umaze [checkpoint=PATH starts=6 horizon=32 out=plan.png]"""
    import numpy as np
    import torch

    from dfplan.checkpoint import CheckpointError
    from dfplan.envs import MazeLayout, get_maze, make_env
    from dfplan.evaluation.plots import plot_plan
    from dfplan.planners.df import load_planner

    try:
        planner = load_planner(_checkpoint_for(cfg), device=cfg.device, **_sampler_overrides(cfg))
    except (CheckpointError, ValueError) as err:
        _fail(str(err))
    env = make_env(cfg.env, goal=cfg.goal)
    resets = [env.reset(seed=int(cfg.seed) + i)[0] for i in range(int(cfg.starts))]
    obs = torch.as_tensor(np.stack([o["observation"] for o in resets]), dtype=torch.float32)
    goal = torch.as_tensor(np.stack([o["desired_goal"] for o in resets]), dtype=torch.float32)
    gen = torch.Generator(device=planner.device).manual_seed(int(cfg.seed))
    plan = planner.plan(obs, goal, cfg.get("horizon"), generator=gen)
    layout = MazeLayout(get_maze(cfg.env).maze_map)
    states = plan.states.cpu().numpy()
    end_dist = np.linalg.norm(states[:, -1, :2] - goal.numpy(), axis=-1)
    through_wall = layout.in_wall(states[..., :2]).any(axis=1)
    plot_plan(layout, states, goal.numpy(), cfg.out,
              title=f"{cfg.env}: {len(states)} plans of {plan.horizon} steps, {1000 * plan.info['seconds']:.0f} ms")
    print(f"planned {len(states)} x {plan.horizon} steps in {1000 * plan.info['seconds']:.0f} ms; end distance to goal "
          f"{end_dist.mean():.2f} (reached {np.mean(end_dist <= 0.45):.0%}); through a wall: {through_wall.mean():.0%}; "
          f"saved {cfg.out}")


@hydra.main(config_path=CONFIGS, config_name="demo", version_base=None)
def demo_main(cfg: DictConfig) -> None:
    """dfplan-demo [env=pointmaze-medium episodes=20 goal=random]"""
    from omegaconf import OmegaConf

    from dfplan.checkpoint import CheckpointError

    eval_cfg = OmegaConf.create({"env": cfg.env, "planner": "df", "checkpoint": None, "variant": cfg.variant,
                                 "episodes": cfg.episodes,
                                 "goal": cfg.goal, "seed": cfg.seed, "batch": cfg.episodes, "device": cfg.device,
                                 "plot": cfg.out, "progress": False})
    print(f"dfplan demo: DF MPC controller on {cfg.env} ({cfg.goal} goal), {cfg.episodes} episodes, shipped "
          f"{cfg.variant} checkpoint")
    try:
        s = run_evaluation(eval_cfg, print_episodes=True)
    except (CheckpointError, ValueError) as err:
        _fail(str(err))
    ttg = "n/a" if s["mean_time_to_goal"] is None else f"{s['mean_time_to_goal']:.0f} steps"
    print(f"normalized score {s['normalized_score_mean']:.1f} ± {s['normalized_score_se']:.1f} (100 = waypoint expert), "
          f"success {s['success_rate']:.0%}, time to goal {ttg}, {s['episodes_per_minute']:.0f} episodes/min; "
          f"saved {cfg.out}")
