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
        dataset_id = cfg.dataset_id or default_dataset_id(spec.name)
        t0 = time.perf_counter()
        ds = generate_pointmaze_dataset(spec, steps=int(cfg.steps), seed=int(cfg.seed), dataset_id=dataset_id,
                                        overwrite=bool(cfg.overwrite), ref_episodes=int(cfg.ref_episodes),
                                        progress=bool(cfg.progress))
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
