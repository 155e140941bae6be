"""Fetch Push / PickAndPlace: the scripted experts succeed, and the dataset recipe round-trips through Minari."""

from __future__ import annotations

import minari
import numpy as np
import pytest

from dfplan.envs.fetch import FETCH_TASKS, collect_fetch_episodes, generate_fetch_dataset, make_expert, make_fetch_env


@pytest.mark.parametrize("name", sorted(FETCH_TASKS))
def test_expert_succeeds(name):
    env = make_fetch_env(name)
    expert = make_expert(name)
    wins = 0
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            action = expert(obs)
            assert action.dtype == np.float32 and action.shape == (4,) and np.all(np.abs(action) <= 1.0)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins += bool(info["is_success"])  # success at the last step: the block must still be at the goal
    env.close()
    assert wins >= 9, f"{name}: expert succeeded on {wins}/10 episodes"


def test_collection_is_seeded():
    a, env_a, rate_a = collect_fetch_episodes("fetch-push", 3, seed=7, suboptimal_fraction=0.5, progress=False)
    b, env_b, rate_b = collect_fetch_episodes("fetch-push", 3, seed=7, suboptimal_fraction=0.5, progress=False)
    env_a.close()
    env_b.close()
    assert rate_a == rate_b
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea.actions, eb.actions)
        np.testing.assert_array_equal(ea.observations["observation"], eb.observations["observation"])


@pytest.mark.parametrize("name", sorted(FETCH_TASKS))
def test_dataset_round_trip(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    generate_fetch_dataset(name, episodes=6, seed=3, ref_episodes=3, progress=False)
    dataset = minari.load_dataset(f"dfplan/fetch/{name.removeprefix('fetch-')}-v0")
    assert dataset.total_episodes == 6 and dataset.total_steps == 300
    for ep in dataset.iterate_episodes():
        assert ep.observations["observation"].shape == (51, 28)
        assert ep.observations["desired_goal"].shape == (51, 3)
        assert ep.actions.shape == (50, 4) and np.all(np.abs(ep.actions) <= 1.0)
        assert ep.truncations[-1] and not ep.truncations[:-1].any() and not ep.terminations.any()
    meta = dataset.storage.metadata
    assert 0.0 <= meta["ref_min_score"] <= meta["ref_max_score"] <= 100.0
    assert meta["ref_max_score"] >= 90.0  # the noise-free expert
    env = dataset.recover_environment()
    assert env.spec.id == FETCH_TASKS[name] and env.spec.max_episode_steps == 50
    env.close()
    with pytest.raises(FileExistsError):
        generate_fetch_dataset(name, episodes=1, ref_episodes=1, progress=False)
    replaced = generate_fetch_dataset(name, episodes=2, ref_episodes=1, overwrite=True, progress=False)
    assert replaced.total_episodes == 2
    assert not list(tmp_path.glob(".dfplan-staging-*"))  # the staging folder is gone
