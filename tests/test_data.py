
import minari
import numpy as np
import pytest
import torch
from conftest import TINY_STEPS

from dfplan.data import DatasetNotFoundError, Normalizer, WindowSampler, chain_episodes, load_runs
from dfplan.envs import custom_maze, get_maze, make_env
from dfplan.envs.recipes import collect_pointmaze_episodes, default_dataset_id, generate_pointmaze_dataset

DS = "dfplan/pointmaze/umaze-v0"


def test_generated_dataset_round_trips_through_minari(datasets):
    ds = minari.load_dataset(DS)
    assert ds.total_steps == TINY_STEPS
    ep = next(ds.iterate_episodes())
    assert ep.observations["observation"].shape == (len(ep.actions) + 1, 4)
    assert ep.actions.shape[1] == 2 and np.abs(ep.actions).max() <= 1.0
    # every episode but the last ends at the goal (the recipe cuts at each reached goal)
    eps = list(ds.iterate_episodes())
    for e in eps[:-1]:
        assert np.linalg.norm(e.observations["achieved_goal"][-1] - e.observations["desired_goal"][-1]) <= 0.45
        assert e.truncations[-1] and not e.truncations[:-1].any()


def test_metadata_holds_reference_scores_and_eval_env(datasets):
    ds = minari.load_dataset(DS)
    meta = ds.storage.metadata
    assert meta["ref_min_score"] < meta["ref_max_score"]
    assert meta["ref_max_score"] > 150  # the expert reaches the goal cell quickly and stays
    eval_env = ds.recover_environment(eval_env=True)
    kwargs = eval_env.spec.kwargs
    assert kwargs["reset_target"] is False and kwargs["continuing_task"] is True
    assert kwargs["maze_map"][1][1] == "g"  # the D4RL U-Maze goal cell
    assert minari.get_normalized_score(ds, np.array([meta["ref_max_score"]]))[0] == pytest.approx(1.0)


def test_generation_is_reproducible(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    a, b = (generate_pointmaze_dataset("pointmaze-umaze", steps=300, seed=7, dataset_id=f"tst/{n}-v0", ref_episodes=1,
                                       progress=False) for n in ("a", "b"))
    ea, eb = next(a.iterate_episodes()), next(b.iterate_episodes())
    np.testing.assert_array_equal(ea.actions, eb.actions)


def test_existing_dataset_is_refused_unless_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    generate_pointmaze_dataset("pointmaze-umaze", steps=200, dataset_id="tst/x-v0", ref_episodes=1, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=true"):
        generate_pointmaze_dataset("pointmaze-umaze", steps=200, dataset_id="tst/x-v0", ref_episodes=1, progress=False)
    ds = generate_pointmaze_dataset("pointmaze-umaze", steps=250, dataset_id="tst/x-v0", overwrite=True,
                                    ref_episodes=1, progress=False)
    assert ds.total_steps == 250
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".dfplan-staging")]
    assert leftovers == []


def test_dwell_variant_stays_at_the_reached_goal_and_keeps_the_noise_stream():

    spec = get_maze("pointmaze-umaze")
    plain, _ = collect_pointmaze_episodes(spec, 1500, seed=3, progress=False)
    dwell, _ = collect_pointmaze_episodes(spec, 1500, seed=3, dwell=40, progress=False)
    n = len(plain[0].actions)  # the first goal is reached at step n in both runs
    np.testing.assert_array_equal(dwell[0].actions[:n], plain[0].actions[:n])
    assert n <= len(dwell[0].actions) <= n + 40 and len(dwell) < len(plain)
    arrival = plain[0].observations["achieved_goal"][-1]
    stay = dwell[0].observations["achieved_goal"][n:]
    assert np.linalg.norm(stay - arrival, axis=1).max() < 1.0  # hovers around the goal it reached
    assert default_dataset_id("pointmaze-umaze", 40) == "dfplan/pointmaze/umaze-dwell40-v0"


def test_custom_maze_map(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    spec = custom_maze([[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], name="pointmaze-tiny")
    ds = generate_pointmaze_dataset(spec, steps=400, dataset_id="tst/tiny-v0", ref_episodes=1, progress=False)
    assert ds.recover_environment(eval_env=True).spec.kwargs["maze_map"][2][2] == "g"
    env = make_env(spec, goal="fixed")
    obs, _ = env.reset(seed=0)
    assert obs["observation"].shape == (4,)


def test_bad_env_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown env 'pointmaze-nope'.*pointmaze-umaze"):
        generate_pointmaze_dataset("pointmaze-nope", steps=10)


def test_missing_dataset_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="dfplan-data env=pointmaze-medium"):
        load_runs("dfplan/pointmaze/medium-v0")


def test_corrupt_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    generate_pointmaze_dataset("pointmaze-umaze", steps=200, dataset_id="tst/bad-v0", ref_episodes=1, progress=False)
    (tmp_path / "tst/bad-v0/data/main_data.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetNotFoundError, match="tst/bad-v0"):
        load_runs("tst/bad-v0")


def test_continuing_episodes_are_chained_from_the_data(datasets):
    splits = load_runs(DS, val_fraction=0.0)
    assert splits.n_episodes > 10
    assert len(splits.train) == 1  # one continuous run, cut at each goal: detected and joined again
    assert len(splits.train[0]) == TINY_STEPS
    # episodes that do not continue one another stay apart
    a = (np.zeros((3, 4)), np.zeros((2, 2)))
    b = (np.ones((4, 4)), np.ones((3, 2)))
    assert [len(r) for r in chain_episodes([a, b])] == [2, 3]


def test_split_is_by_episode(datasets):
    splits = load_runs(DS, val_fraction=0.2, seed=0)
    n_train = sum(r.n_episodes for r in splits.train)
    n_val = sum(r.n_episodes for r in splits.val)
    assert n_train + n_val == splits.n_episodes and n_val == round(0.2 * splits.n_episodes)


def test_windows_shapes_and_masks(datasets):
    splits = load_runs(DS, val_fraction=0.0)
    sampler = WindowSampler(splits.train, 64, splits.normalizer)
    batch = sampler.sample(16, np.random.default_rng(0))
    assert batch.obs.shape == (16, 65, 4) and batch.actions.shape == (16, 64, 2) and batch.mask.shape == (16, 64)
    last = sampler.gather(np.array([len(sampler) - 1]))  # starts one step before the run's end
    assert last.mask[0].tolist() == [True] + [False] * 63
    assert torch.all(last.actions[0, 1:] == 0)


def test_normalizer_round_trip_and_state_dict():
    rng = np.random.default_rng(0)
    obs, act = rng.normal(3, 2, (500, 4)), rng.uniform(-1, 1, (500, 2))
    for mode in ("gaussian", "minmax"):
        nz = Normalizer.fit(obs, act, mode=mode)
        x = torch.as_tensor(obs, dtype=torch.float32)
        assert torch.allclose(nz.denorm_obs(nz.norm_obs(x)), x, atol=1e-5)
        again = Normalizer.from_state_dict(nz.state_dict())
        assert torch.equal(again.norm_act(torch.ones(2)), nz.norm_act(torch.ones(2)))
    mm = Normalizer.fit(obs, act, mode="minmax").norm_obs(torch.as_tensor(obs, dtype=torch.float32))
    assert mm.min() >= -1 - 1e-5 and mm.max() <= 1 + 1e-5
    with pytest.raises(ValueError, match="gaussian"):
        Normalizer.fit(obs, act, mode="zscore")
