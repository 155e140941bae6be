"""Fetch as a task: a tiny real dataset, a tiny DF (and BC) trained through the real loop, planning and control on
the real env, and the controller's safety under bad observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

import dfplan
from dfplan import run
from dfplan.envs.fetch import make_fetch_env
from dfplan.tasks import get_task
from dfplan.training import train


@pytest.fixture(scope="module")
def fetch_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fetch-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        get_task("fetch-push").generate_dataset("dfplan/fetch/push-v0", seed=0, overwrite=False, progress=False,
                                                episodes=12)
        yield root


def _train(root, out, model: str, steps: int = 40):


    overrides = [f"out={out}", "env=fetch-push", f"train.steps={steps}", "train.batch_size=16", "train.warmup_steps=5",
                 "train.ema_start=5", "train.val_every=40", "train.checkpoint_every=40", "train.progress=false",
                 "device=cpu"]
    if model == "df":
        overrides += ["+experiment=fetch", "model.hidden=32", "model.mlp_hidden=32", "model.emb_dim=16",
                      "model.num_levels=100"]
    else:
        overrides += ["model=bc", "train=bc_cpu", "model.hidden=32", "train.val_every=40", "train.steps=40",
                      "train.checkpoint_every=40", "train.batch_size=16", "train.progress=false",
                      "train.warmup_steps=5", "train.ema_start=5"]
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    cfg.dataset = "dfplan/fetch/push-v0"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        return train(cfg, task=get_task("fetch-push"))


@pytest.fixture(scope="module")
def fetch_df(fetch_data, tmp_path_factory):
    torch.manual_seed(0)
    return _train(fetch_data, tmp_path_factory.mktemp("fetch-df"), "df")


def test_the_goal_is_in_the_observation():
    env = dfplan.make_env("fetch-push")
    obs, _ = env.reset(seed=0)
    assert obs["observation"].shape == (28,) and np.allclose(obs["observation"][25:], obs["desired_goal"])


def test_tiny_df_plans_and_controls_a_real_fetch_env(fetch_df):
    planner = dfplan.load_planner(fetch_df, device="cpu", ddim_steps=2)
    assert planner.task.name == "fetch-push" and planner.goal_dims == (3, 4, 5)
    env = dfplan.make_env("fetch-push")
    obs, _ = env.reset(seed=3)
    plan = planner.plan(torch.as_tensor(obs["observation"][None]), torch.as_tensor(obs["desired_goal"][None]), 5)
    assert plan.actions.shape == (1, 10, 4) and plan.states.shape == (1, 11, 28)
    for objective in ("object_to_goal", "reach_then_carry"):
        c = dfplan.MPCController(planner, horizon=4, replan_every=4, objective=objective, max_episode_steps=50)
        c.reset(seed=0)
        obs, _ = env.reset(seed=3)
        for _ in range(12):
            a = c.act(obs)
            assert a.shape == (4,) and np.isfinite(a).all() and np.abs(a).max() <= 1.0
            obs, *_ = env.step(a)


def test_fetch_controller_is_safe_under_bad_observations(fetch_df):
    c = dfplan.MPCController(dfplan.load_planner(fetch_df, device="cpu", ddim_steps=2), horizon=3)
    c.reset(seed=0)
    obs = {"observation": np.full(28, np.nan), "desired_goal": np.zeros(3)}
    assert np.isfinite(c.act(obs)).all() and c.failures >= 1
    huge = {"observation": np.full(28, 3e38), "desired_goal": np.full(3, -3e38)}
    a = c.act(huge)
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0
    with pytest.raises(ValueError, match="observations"):
        c.act({"observation": np.zeros(20), "desired_goal": np.zeros(3)})


def test_a_plain_fetch_env_observation_acts_like_ours(fetch_df):
    """`gymnasium.make("FetchPush-v4")`'s own dict (25-D observation) reads as ours (the goal appended)."""

    planner = dfplan.load_planner(fetch_df, device="cpu", ddim_steps=2)
    ours, _ = make_fetch_env("fetch-push").reset(seed=4)
    plain, _ = make_fetch_env("fetch-push").env.reset(seed=4)  # without our GoalInObservation wrapper
    assert plain["observation"].shape == (25,)
    actions = []
    for obs in (ours, plain):
        c = dfplan.MPCController(planner, horizon=3)
        c.reset(seed=0)
        actions.append(c.act(obs))
    assert np.allclose(actions[0], actions[1])


def test_evaluation_scores_success_at_the_end_and_draws(fetch_df, fetch_data, tmp_path):

    r = run.evaluate(checkpoint=fetch_df, episodes=2, batch=2, horizon=3, ddim_steps=2, progress=False,
                     plot=tmp_path / "fetch.png")
    assert r.summary["env"] == "fetch-push" and r.summary["score_name"] == "success %"
    assert 0.0 <= r.summary["score_mean"] <= 100.0 and (tmp_path / "fetch.png").stat().st_size > 10_000
    expert = run.evaluate("fetch-push", planner="expert", episodes=4, progress=False)
    assert expert.summary["score_mean"] >= 75.0


def test_bc_trains_and_acts(fetch_data, tmp_path):
    final = _train(fetch_data, tmp_path / "bc", "bc")

    r = run.evaluate(checkpoint=final, planner="bc", episodes=2, progress=False)
    assert r.summary["episodes"] == 2 and r.summary["failures"] == 0
