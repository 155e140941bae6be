"""Shared fixtures: tiny real datasets in a temporary Minari folder and a tiny trained DF model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY_STEPS = 3000
torch.set_num_threads(1)  # tiny models gain nothing from threads, and threads thrash when cores are busy


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory):
    """A temporary MINARI_DATASETS_PATH holding a tiny real U-Maze dataset (the real recipe, fewer steps)."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        from dfplan.envs.recipes import generate_pointmaze_dataset

        generate_pointmaze_dataset("pointmaze-umaze", steps=TINY_STEPS, seed=123, ref_episodes=3, progress=False)
        yield root


@pytest.fixture
def datasets(minari_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    return minari_root


TINY_MODEL = dict(frame_stack=4, hidden=32, mlp_hidden=32, emb_dim=16, num_levels=100)


@pytest.fixture(scope="session")
def tiny_checkpoint(minari_root, tmp_path_factory):
    """A DF checkpoint trained for a few hundred steps on the tiny dataset through the real training loop."""
    from dfplan.tasks import get_task
    from dfplan.training import train

    out = tmp_path_factory.mktemp("run")
    cfg = train_config(out, steps=300)
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(minari_root))
        train(cfg, task=get_task("pointmaze-umaze"))
    return out / "final.pt"


def train_config(out, steps: int, **train_overrides):
    """A composed training config (the real Hydra config) with a tiny model."""
    from hydra import compose, initialize_config_module

    overrides = [f"out={out}", "dataset=dfplan/pointmaze/umaze-v0", f"train.steps={steps}", "train.batch_size=32",
                 "train.window_steps=32",
                 "train.warmup_steps=20", "train.ema_start=20", "train.val_every=100", "train.checkpoint_every=50",
                 "train.log_every=25", "train.progress=false"]
    overrides += [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    overrides += [f"train.{k}={v}" for k, v in train_overrides.items()]
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        return compose(config_name="train", overrides=overrides)


def drive(controller, steps: int, seed: int = 0, env_name: str = "pointmaze-umaze"):
    """Reset a real env and the controller with `seed`, run `steps` steps; the actions taken [steps, Da]."""
    import numpy as np

    from dfplan import make_env

    env = make_env(env_name)
    obs, _ = env.reset(seed=seed)
    controller.reset(seed=seed)
    actions = []
    for _ in range(steps):
        actions.append(controller.act(obs))
        obs, *_ = env.step(actions[-1])
    return np.stack(actions)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def cli(cmd, *args, root, timeout=600):
    """Run an installed dfplan command with MINARI_DATASETS_PATH=root; the CompletedProcess (text output)."""
    exe = shutil.which(cmd) or str(Path(sys.executable).parent / cmd)
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env)
