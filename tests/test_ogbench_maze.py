"""OGBench PointMaze navigate tasks: the env wrapper against OGBench's own env, the oracle and its cached BFS, the
point's tracker, a tiny real navigate dataset through dfplan-data (generated and imported from an .npz file), and a
tiny DF trained on it that controls the real env with its own actions and by tracking."""

from __future__ import annotations

import minari
import numpy as np
import pytest
import torch
from conftest import cli
from hydra import compose, initialize_config_module

import dfplan
from dfplan import run
from dfplan.controllers import make_controller
from dfplan.envs import ogbench_maze as nav
from dfplan.errors import UserError
from dfplan.evaluation import run_episodes
from dfplan.tasks import get_task
from dfplan.tasks.base import SOLVED_VALUE
from dfplan.training import train

pytest.importorskip("ogbench")


@pytest.mark.parametrize("maze", ["medium", "large", "giant"])
def test_cached_oracle_subgoals_equal_ogbench_s_own(maze):
    env = nav.make_raw_env(maze)
    ours = nav.OracleSubgoals(env)
    free = [(i, j) for i, j in zip(*np.nonzero(np.asarray(env.unwrapped.maze_map) == 0))]
    rng = np.random.default_rng(0)
    for _ in range(60):
        a, b = (free[k] for k in rng.integers(len(free), size=2))
        xy = np.asarray(env.unwrapped.ij_to_xy(a)) + rng.uniform(-1.9, 1.9, 2)
        goal = np.asarray(env.unwrapped.ij_to_xy(b)) + rng.uniform(-1.9, 1.9, 2)
        theirs, _ = env.unwrapped.get_oracle_subgoal(xy, goal)
        assert np.allclose(ours(xy, goal), theirs)


def test_env_seeds_pick_the_task_and_the_jitter_reproducibly():
    task = get_task("ogbench-pointmaze-large")
    env = task.make_env()
    a, info = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=12)  # the same task (1 + 12 % 5 = 3), other jitter
    assert info["task_id"] == nav.task_id_of(7) == 3
    for key in ("observation", "desired_goal"):
        assert np.allclose(a[key], b[key]) and not np.allclose(a[key], c[key])
    task_info = env.unwrapped.task_infos[2]
    assert np.abs(a["observation"] - task_info["init_xy"]).max() <= nav.MAZE_UNIT / 4
    assert np.abs(a["desired_goal"] - task_info["goal_xy"]).max() <= nav.MAZE_UNIT / 4
    still = nav.make_navigate_env("large", jitter=False)
    o, _ = still.reset(seed=7)
    assert np.allclose(o["observation"], task_info["init_xy"]) and np.allclose(o["desired_goal"], task_info["goal_xy"])


def test_the_expert_reaches_the_goal_and_the_tracker_lands_on_its_target():
    task = get_task("ogbench-pointmaze-medium")
    res = run_episodes(task.expert(), task, episodes=5, seed=100, batch=5, progress=False)
    assert all(e.success for e in res.episodes) and res.summary(task)["task1_success"] == 100.0
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    target = obs["observation"] + np.array([0.1, -0.15])
    action = task.track_action(obs["observation"][None], target[None], None)[0]
    obs, *_ = env.step(action)
    assert np.allclose(obs["observation"], target, atol=1e-3)
    far = task.track_action(np.zeros((1, 2)), np.array([[5.0, -0.1]]), None)
    assert np.allclose(far, [[1.0, -0.5]])  # clipped to the action box


def test_a_plain_navigate_observation_reads_as_our_wrapper_makes_it():
    task = get_task("ogbench-pointmaze-giant")
    env = task.make_env()
    adapter = task.observation_adapter()
    mine, info = env.reset(seed=3)
    raw = env.unwrapped.get_ob()  # what the plain env returns: the xy
    read = adapter(raw, goal=info["goal"])
    for key in ("observation", "desired_goal", "achieved_goal"):
        assert np.allclose(read[key], mine[key]), key
    assert adapter(np.stack([raw, raw]), goal=np.stack([info["goal"]] * 2))["observation"].shape == (2, 2)
    with pytest.raises(UserError, match="goal=info"):
        adapter(raw)
    with pytest.raises(UserError, match=r"\[2\]"):
        adapter(np.zeros(3), goal=np.zeros(3))


@pytest.fixture(scope="module")
def navigate_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("navigate-data")
    out = cli("dfplan-data", "env=ogbench-pointmaze-medium", "episodes=3", "workers=1", "dataset_id=test/nav-v0",
              "progress=false", root=root)
    assert out.returncode == 0, out.stderr[-2000:]
    return root


def test_navigate_data_follows_ogbench_s_recipe(navigate_data, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(navigate_data))
    ds = minari.load_dataset("test/nav-v0")
    eps = list(ds.iterate_episodes())
    assert len(eps) == 3 and all(len(e.actions) == nav.EPISODE_STEPS for e in eps)
    xy, goals = eps[0].observations["observation"], eps[0].observations["desired_goal"]
    assert xy.shape == (nav.EPISODE_STEPS + 1, 2) and np.allclose(eps[0].observations["achieved_goal"], xy)
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=-1)
    assert steps.max() <= nav.STEP_SIZE * np.sqrt(2) + 1e-6  # kinematic steps of at most 0.2 per axis
    assert 0.15 < np.median(steps) < 0.25  # the expert walks: unit actions plus noise
    changes = np.flatnonzero(np.abs(np.diff(goals, axis=0)).max(axis=1) > 0)
    assert len(changes) >= 2  # reached goals are replaced by new ones
    for t in changes:  # a goal changes when the point is within the success distance of it
        assert np.linalg.norm(xy[t + 1] - goals[t]) <= nav.SUCCESS_DISTANCE
    assert eps[0].rewards.sum() >= len(changes)
    assert ds.storage.metadata["ref_max_score"] == 100.0


def test_a_navigate_npz_file_imports(navigate_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(navigate_data))
    eps = list(minari.load_dataset("test/nav-v0").iterate_episodes())
    obs = np.concatenate([e.observations["observation"][:-1] for e in eps])
    act = np.concatenate([e.actions for e in eps])
    term = np.zeros(len(obs), bool)
    term[nav.EPISODE_STEPS - 1::nav.EPISODE_STEPS] = True
    path = tmp_path / "pointmaze-medium-navigate-v0.npz"
    np.savez_compressed(path, observations=obs.astype(np.float32), actions=act, terminals=term)
    out = cli("dfplan-data", "env=ogbench-pointmaze-medium", f"npz={path}", root=navigate_data)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = list(minari.load_dataset(nav.default_dataset_id("medium", npz=str(path))).iterate_episodes())
    assert len(imported) == 3 and np.allclose(imported[0].observations["observation"],
                                              eps[0].observations["observation"][:-1], atol=1e-5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((5, 7)), actions=np.zeros((5, 2)), terminals=np.zeros(5))
    out = cli("dfplan-data", "env=ogbench-pointmaze-medium", f"npz={bad}", root=navigate_data)
    assert out.returncode == 2 and "not a state-based pointmaze" in out.stderr and "Traceback" not in out.stderr


def test_tiny_df_plans_the_maze_and_drives_the_point_both_ways(navigate_data, tmp_path):
    overrides = [f"out={tmp_path / 'df'}", "env=ogbench-pointmaze-medium", "+experiment=ogbench_maze",
                 "train.steps=30", "train.batch_size=8", "train.warmup_steps=5", "train.ema_start=5",
                 "train.val_every=30", "train.checkpoint_every=30", "train.progress=false", "device=cpu",
                 "model.hidden=32", "model.mlp_hidden=32", "model.emb_dim=16", "model.num_levels=100",
                 "dataset=test/nav-v0"]
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(navigate_data))
        torch.manual_seed(0)
        final = train(cfg, task=get_task("ogbench-pointmaze-medium"))
    planner = dfplan.load_planner(final, device="cpu", ddim_steps=2)
    assert planner.task.name == "ogbench-pointmaze-medium" and planner.frame_stack == 10
    assert planner.settings.controller.horizon == 100  # the experiment's whole-episode plans are stored
    for execution in ("actions", "track"):
        r = run.evaluate(checkpoint=final, episodes=2, batch=2, horizon=4, ddim_steps=2, progress=False,
                         max_episode_steps=30, execution=execution, replan_every=10,
                         plot=tmp_path / f"{execution}.png")
        assert r.summary["episodes"] == 2 and r.summary["failures"] == 0
        assert (tmp_path / f"{execution}.png").stat().st_size > 10_000
    task = get_task("ogbench-pointmaze-medium")
    plan = planner.plan(torch.zeros(3, 2), torch.tensor([[8.0, 8.0]] * 3), horizon=5)
    stats = task.plan_stats(plan.states.numpy(), np.array([[8.0, 8.0]] * 3))
    assert {"in_wall", "through_wall", "jumps", "end_distance"} <= set(stats)


def test_the_goal_tasks_carry_the_goal_in_the_observation():
    plain, with_goal = get_task("ogbench-pointmaze-large"), get_task("ogbench-pointmaze-large-goal")
    a, _ = plain.make_env().reset(seed=4)
    b, info = with_goal.make_env().reset(seed=4)
    assert b["observation"].shape == (4,) and np.allclose(b["observation"], np.r_[a["observation"], a["desired_goal"]])
    assert np.allclose(with_goal.observation_adapter()(a["observation"], goal=info["goal"])["observation"],
                       b["observation"])
    assert with_goal.default_dataset_id() == "dfplan/ogbench/pointmaze-large-navigate-goal-v0"
    res = run_episodes(with_goal.expert(), with_goal, episodes=2, seed=0, batch=2, progress=False)
    assert all(e.success for e in res.episodes)


def test_search_and_revisit_settings_meet_the_shipped_checkpoints_settings():
    """`search=mctd` alone is valid on a checkpoint that stores a guidance scale (it was once checked against the
    defaults, where guidance is off); the shipped large and medium models store the settings that their rows use."""
    task = get_task("ogbench-pointmaze-large")
    c = make_controller("df", task, device="cpu", search="mctd", search_expansions=2)
    assert c.planner.sampler.search == "mctd" and c.planner.sampler.guidance_scale > 0
    assert (c.revisit_cost, c.revisit_radius, c.snap_radius) == (0.2, 2.0, 2.0)
    assert make_controller("df", task, device="cpu", revisit_cost=0).revisit_cost == 0.0
    with pytest.raises(UserError, match="guidance_scale=0"):
        make_controller("df", task, device="cpu", search="mctd", guidance_scale=0)
    medium = make_controller("df", get_task("ogbench-pointmaze-medium"), device="cpu")  # what medium's rows ran with
    assert (medium.blocked_cost, medium.blocked_reach, medium.snap_radius, medium.replan_every,
            medium.revisit_cost) == (4.0, 1.0, 3.0, 10, 0.0)


def test_the_navigate_value_tests_plausibility_inside_tokens():
    """Tree search's value on a hand-made plan of two 10-step tokens: a 2.2 m step between them is the model's loose
    join, tested only when the plan is read step by step; the same step inside a token makes the plan implausible."""
    task = get_task("ogbench-pointmaze-medium")

    def plan(jump_at: int) -> torch.Tensor:
        x = torch.arange(21) * 0.2
        x[jump_at:] += 2.0
        return torch.stack([x, torch.zeros(21)], -1)[None]

    goal = torch.tensor([[6.0, 0.0]])
    assert task.plan_value(plan(11), goal, frame_stack=10).item() >= SOLVED_VALUE
    assert task.plan_value(plan(11), goal).item() == 0.0
    assert task.plan_value(plan(5), goal, frame_stack=10).item() == 0.0


def test_a_point_that_cannot_move_charges_the_target_it_was_sent_to():
    """`blocked_cost`: a step that moved the point far less than its action commanded is blocked (the point is
    kinematic); a controller fed a point that never moves records the targets it was sent to, and guidance then
    charges a plan that goes there, where the controller without the cost does not; with `blocked_reach` the place
    recorded is on the way there, that far from the point."""
    states = np.zeros((4, 2))
    actions = np.array([[1.0, 0.0], [1.0, 0.0], [0.2, 0.0], [0.0, 0.0]])
    moved = np.array([[0.0, 0.0], [0.19, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert nav.blocked(states, actions, moved).tolist() == [True, False, False, False]  # stopped; moved; too small
    task = get_task("ogbench-pointmaze-giant-goal")
    obs, _ = task.make_env().reset(seed=3)
    controllers = {}
    for cost, reach in ((0.0, None), (2.0, None), (2.0, 0.5)):
        c = controllers[cost, reach] = make_controller("df", task, device="cpu", blocked_cost=cost, revisit_cost=0.0,
                                                       blocked_reach=reach, horizon=4, replan_every=10)
        c.reset(seed=0)
        for _ in range(2 * c.fs):
            c.act(obs)  # the same observation every step: the point never moves
    assert controllers[0.0, None].blocked == []
    where, steps = controllers[2.0, None].blocked[-1]  # one record per token: the last target, the blocked steps
    assert 0 < steps[0] <= controllers[2.0, None].fs and not np.allclose(where, obs["achieved_goal"])
    near, _ = controllers[2.0, 0.5].blocked[-1]  # blocked_reach: the place on the way there, 0.5 from the point
    assert np.linalg.norm(near - obs["achieved_goal"]) == pytest.approx(0.5, abs=1e-4)
    there = torch.as_tensor(where, dtype=torch.float32)[:, None].expand(1, 3, 2)
    plan = torch.cat([there, torch.zeros(1, 3, 2)], -1)  # [x, y, goal x, goal y]: a plan that stays at the target
    goal = torch.as_tensor(obs["desired_goal"][None], dtype=torch.float32)
    acts = torch.zeros(1, 2, 2)
    charged, free = (controllers[cost, None]._guidance(goal)(plan, acts) for cost in (2.0, 0.0))
    assert charged < free
    with pytest.raises(UserError, match="blocked_cost"):
        make_controller("df", task, device="cpu", blocked_cost=1.0, execution="actions")
    assert make_controller("df", task, device="cpu").blocked_cost == 4.0  # what the shipped model's rows ran with
    assert make_controller("df", task, device="cpu", execution="actions").blocked_cost == 0.0  # no target to record
