"""OGBench cube tasks: the subgoal layer and hindsight labels (pure functions), the real envs and OGBench's own
oracle, a tiny real play dataset through dfplan-data (generated and imported from an .npz file), and a tiny DF
trained on it that controls the real env."""

from __future__ import annotations

import json

import minari
import numpy as np
import pytest
import torch
from conftest import cli, drive
from hydra import compose, initialize_config_module

import dfplan
from dfplan import run
from dfplan.checkpoint import export_for_inference
from dfplan.controllers import make_controller
from dfplan.diffuser.planner import load_diffuser
from dfplan.envs import ogbench as og
from dfplan.errors import UserError
from dfplan.lowlevel import load_lowlevel
from dfplan.tasks import get_task
from dfplan.tasks.ogbench import CubeTask
from dfplan.training import train

R = og.SUCCESS_DISTANCE


def dfplan_data(*args, root, timeout=600):
    return cli("dfplan-data", *args, "progress=false", root=root, timeout=timeout)


def train_on_tiny_data(cube_data, overrides: list[str], seed: int | None = None):
    """Train with these `dfplan-train` overrides on the tiny cube-single play data; the final checkpoint's path."""
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(cube_data))
        if seed is not None:
            torch.manual_seed(seed)
        return train(cfg, task=get_task("ogbench-cube-single"))


def test_subgoals_build_a_stack_bottom_up_and_keep_the_cube_in_hand():
    goals = np.array([[0.0, 0.0, 0.6], [0.0, 0.0, 0.2]])  # cube 0 goes on top of cube 1
    cubes = np.array([[-2.0, 0.0, 0.2], [2.0, 0.0, 0.2]])
    c, target = og.choose_subgoal(cubes, goals, None)
    assert c == 1 and np.allclose(target, goals[1])
    cubes[1] = goals[1]  # placed: now the top cube, although the bottom one sits under its target
    c, target = og.choose_subgoal(cubes, goals, 1)
    assert c == 0 and np.allclose(target, goals[0])
    assert og.choose_subgoal(goals.copy(), goals, 0)[0] is None


def test_a_placed_cube_stays_the_subgoal_until_the_gripper_lets_go():
    goals = np.array([[0.0, 0.0, 0.2], [1.0, 1.0, 0.2]])
    cubes = np.array([[0.1, 0.0, 0.2], [-1.0, -1.0, 0.2]])  # cube 0 placed (within 0.04 m)
    holding = cubes[0] + [0.0, 0.0, 0.1]
    assert og.choose_subgoal(cubes, goals, 0, effector=holding)[0] == 0
    lifted = cubes[0] + [0.0, 0.0, 1.0]  # opened and lifted 10 cm: the next cube
    assert og.choose_subgoal(cubes, goals, 0, effector=lifted)[0] == 1
    assert og.choose_subgoal(cubes, goals, 0)[0] == 1  # without the effector: as soon as it is placed


def test_subgoals_park_a_cube_to_swap_two():
    cubes = np.array([[0.0, -1.0, 0.2], [0.0, 1.0, 0.2]])
    goals = cubes[::-1].copy()
    c, target = og.choose_subgoal(cubes, goals, None)
    others = np.concatenate([cubes, goals])
    assert np.min(np.linalg.norm(others[:, :2] - target[:2], axis=-1)) >= 2 * R  # a free spot, not the other cube
    sub = og.subgoal_positions(cubes, c, target).reshape(2, 3)
    assert np.allclose(sub[c], target) and np.allclose(sub[1 - c], cubes[1 - c])


def test_the_moves_a_whole_goal_planner_chooses_among_clear_a_taken_target_first():
    """`cube_moves`: every open cube to its free target; a cube whose target another cube sits on waits; when every
    open target is taken (the swap) the cubes in the way go to a free spot; a stacking target is not taken."""
    a, b = np.array([0.0, -1.0, 0.2]), np.array([0.0, 1.0, 0.2])
    free = [0.0, 0.0, 0.2], [2.0, 2.0, 0.2]
    moves = og.cube_moves(np.array([a, b]), np.array(free), np.array([True, True]))
    assert [c for c, _ in moves] == [0, 1] and np.allclose(moves[1][1], free[1])
    moves = og.cube_moves(np.array([a, b]), np.array([b, free[1]]), np.array([True, True]))  # cube 1 sits on 0's
    assert [c for c, _ in moves] == [1] and np.allclose(moves[0][1], free[1])
    swap = og.cube_moves(np.array([a, b]), np.array([b, a]), np.array([True, True]))
    assert [c for c, _ in swap] == [0, 1]
    for _, spot in swap:
        taken = np.array([a, b])
        assert np.min(np.linalg.norm(taken[:, :2] - spot[:2], axis=-1)) >= 2 * R
    stack = og.cube_moves(np.array([a, b]), np.array([a + [0.0, 0.0, 0.4], a]), np.array([True, False]))
    assert [c for c, _ in stack] == [0]  # cube 1 sits under cube 0's target: it does not block it
    task = get_task("ogbench-cube-double")
    raw = np.zeros((2, og.PROPRIO_DIMS + 2 * og.CUBE_DIMS))
    raw[:, list(og.cube_dims(2))] = np.concatenate([a, b])
    goals = np.array([np.concatenate([b, a]), np.concatenate(free)])
    rows, objects, aims = task.object_moves(og.with_offsets(raw, goals, 2), goals, np.ones((2, 2), bool))
    assert rows.tolist() == [0, 0, 1, 1] and objects.tolist() == [0, 1, 0, 1]
    assert np.allclose(aims[0, 3:], a) and np.allclose(aims[0, :3], swap[0][1])  # cube 0 parked, cube 1's as given
    assert np.allclose(aims[2:], goals[1])


def test_the_cube_tasks_object_hooks_on_hand_made_states():
    """What `object_choice` reads from the task: which cubes are placed, when a placed one is let go, and the
    observation that presents one cube's target alone (its offset, the other cube's zero)."""
    task = get_task("ogbench-cube-double")
    raw = np.zeros((2, og.PROPRIO_DIMS + 2 * og.CUBE_DIMS))
    cubes = np.array([[[0.1, 0.0, 0.2], [-1.0, -1.0, 0.2]], [[2.0, 0.0, 0.2], [1.0, 1.0, 0.2]]])
    raw[:, list(og.cube_dims(2))] = cubes.reshape(2, 6)
    raw[0, list(og.EFFECTOR)] = cubes[0, 0] + [0.0, 0.0, 0.1]  # env 0 still holds its placed cube 0
    raw[1, list(og.EFFECTOR)] = [0.0, 0.0, 2.0]
    goals = np.array([[0.0, 0.0, 0.2, 1.0, 1.0, 0.2]] * 2)
    states = og.with_offsets(raw, goals, 2)
    assert task.objects_placed(states, goals).tolist() == [[True, False], [False, True]]
    assert task.object_done(states, goals, np.array([0, 1])).tolist() == [False, True]
    shown, sub = task.present_object(states, goals, np.array([1, -1]))
    offsets = shown[:, -6:].reshape(2, 2, 3)
    assert np.allclose(offsets[0, 1], goals[0, 3:] - cubes[0, 1]) and np.allclose(offsets[0, 0], 0.0)
    assert np.allclose(offsets[1], 0.0) and np.allclose(sub[1], cubes[1].reshape(-1))
    assert np.allclose(shown[:, :raw.shape[1]], raw)


def test_object_choice_plans_each_open_cube_and_follows_the_best_until_it_is_let_go(monkeypatch):
    """Given every cube's target (goal=whole), `object_choice=search` plans one plan per unplaced cube with the
    shipped cube-double DF, moves the cube whose plan the task's value ranks best, and keeps it; `random` is
    reproducible under a seed; a one-object task refuses the setting."""

    task = get_task("ogbench-cube-double")
    prefer = {"cube": 1}

    def value(states, goal):  # the plan that moves the preferred cube furthest scores best
        dims = list(og.cube_dims(2))[3 * prefer["cube"]:3 * prefer["cube"] + 3]
        return (states[:, -1, dims] - states[:, 0, dims]).norm(dim=-1) + 1e-3

    monkeypatch.setattr(CubeTask, "plan_value", lambda self, states, goal, frame_stack=1: value(states, goal))
    controller = make_controller("df", task, device="cpu", object_choice="search", choice_horizon=4)
    env = task.make_env(goal="whole")
    obs, _ = env.reset(seed=2)  # task 3: both cubes move
    controller.reset(seed=0)
    for _ in range(3):
        action = controller.act(obs)
        assert np.isfinite(action).all() and np.abs(action).max() <= 1.0
        obs, *_ = env.step(action)
    assert controller.chooser.plans == 2 and controller.chooser.chosen.tolist() == [1]  # one choice, then kept
    prefer["cube"] = 0
    controller.reset(seed=0)
    controller.act(env.reset(seed=2)[0])
    assert controller.chooser.chosen.tolist() == [0]
    obs, _ = env.reset(seed=3)  # task 4, the swap: each cube sits on the other's target, so one is parked first
    controller.reset(seed=0)
    controller.act(obs)
    goal, aim = obs["desired_goal"].reshape(2, 3), controller.chooser.aims[0].reshape(2, 3)
    assert controller.chooser.chosen.tolist() == [0] and np.allclose(aim[1], goal[1])
    assert np.min(np.linalg.norm(np.concatenate([goal, obs["achieved_goal"].reshape(2, 3)])[:, :2] - aim[0, :2],
                                 axis=-1)) >= 2 * R
    picks = []
    for _ in range(2):
        rand = make_controller("df", task, device="cpu", object_choice="random")
        rand.reset(seed=7)
        rand.act({k: np.stack([v] * 6) for k, v in env.reset(seed=2)[0].items()})
        picks.append(rand.chooser.chosen.tolist())
    assert picks[0] == picks[1] and set(picks[0]) == {0, 1}  # the same draws under a seed, both cubes drawn
    layer = task.make_env()  # our one-cube subgoal layer: one cube open at a time, so nothing to choose or change
    controller.reset(seed=0)
    seen = []
    monkeypatch.setattr(controller, "_remember", lambda states: seen.append(states))
    obs, _ = layer.reset(seed=2)
    controller.act(obs)
    assert np.array_equal(seen[0][0], obs["observation"].astype(np.float32))
    with pytest.raises(UserError, match="object_choice=search chooses among several goal objects"):
        make_controller("df", get_task("ogbench-cube-single"), device="cpu", object_choice="search")


def test_hindsight_labels_and_task_ends_from_motion():
    T = 60
    cubes = np.zeros((T, 1, 3))
    cubes[10:20, 0, 0] = np.linspace(0, 1, 10)  # carry 1: 0 -> 1
    cubes[20:, 0, 0] = 1.0
    cubes[40:50, 0, 1] = np.linspace(0, 1, 10)  # carry 2: y 0 -> 1
    cubes[50:, 0, 1] = 1.0
    ends = og.task_ends_from_motion(cubes)
    assert len(ends) == 1 and 20 <= ends[0] <= 40  # between the two carries
    sub = og.hindsight_subgoals(cubes, ends)
    assert np.allclose(sub[0], [1.0, 0.0, 0.0]) and np.allclose(sub[ends[0]], [1.0, 0.0, 0.0])
    assert np.allclose(sub[ends[0] + 1], [1.0, 1.0, 0.0]) and np.allclose(sub[-1], [1.0, 1.0, 0.0])


@pytest.mark.parametrize("name,dim", [("ogbench-cube-single", 31), ("ogbench-cube-double", 43)])
def test_env_observation_and_task_cycle(name, dim):
    env = dfplan.make_env(name)
    task_ids = []
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        task_ids.append(info["task_id"])
        assert obs["observation"].shape == (dim,) and obs["achieved_goal"].shape == obs["desired_goal"].shape
        offsets = obs["observation"][-obs["desired_goal"].size:]
        assert np.allclose(offsets, obs["desired_goal"] - obs["achieved_goal"]) and np.abs(offsets).max() > 0.5
    assert task_ids == [1, 2, 3, 4, 5]
    assert get_task(name).max_episode_steps == env.spec.max_episode_steps


def test_the_oracle_solves_cube_single_through_the_evaluation():

    r = run.evaluate("ogbench-cube-single", planner="expert", episodes=5, seed=0, progress=False)
    assert r.summary["score_mean"] == 100.0 and {f"task{k}_success" for k in range(1, 6)} <= set(r.summary)
    assert r.summary["success_at_end"] == 100.0  # the oracle's cubes stay placed to the last step as well


@pytest.fixture(scope="module")
def cube_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogbench-data")
    out = dfplan_data("env=ogbench-cube-single", "episodes=2", "workers=2", "dataset_id=test/cube-v0", root=root)
    assert out.returncode == 0, out.stderr[-2000:]
    return root


def test_play_data_carries_hindsight_subgoals(cube_data, monkeypatch):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(cube_data))
    ds = minari.load_dataset("test/cube-v0")
    eps = list(ds.iterate_episodes())
    assert len(eps) == 2 and all(len(e.actions) == og.EPISODE_STEPS for e in eps)
    obs = eps[0].observations["observation"]
    cubes, sub = obs[:, 19:22], eps[0].observations["desired_goal"]
    assert np.allclose(obs[:, 28:31], sub - cubes)  # the state carries the offsets to the subgoal
    assert obs.shape == (og.EPISODE_STEPS + 1, 31)
    changes = np.flatnonzero(np.abs(np.diff(sub, axis=0)).max(axis=1) > 0)
    assert len(changes) >= 5  # the oracle did several pick-and-places
    for t in changes:  # at a task's end the subgoal is where the cube is
        assert np.allclose(sub[t], cubes[t])
    assert ds.storage.metadata["ref_max_score"] >= 90.0


def test_an_ogbench_npz_file_imports(cube_data, tmp_path, monkeypatch):

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(cube_data))
    eps = list(minari.load_dataset("test/cube-v0").iterate_episodes())
    raw = np.concatenate([e.observations["observation"][:-1, :28] for e in eps])
    act = np.concatenate([e.actions for e in eps])
    term = np.zeros(len(raw), bool)
    term[og.EPISODE_STEPS - 1::og.EPISODE_STEPS] = True
    path = tmp_path / "cube-single-play-v0.npz"
    np.savez_compressed(path, observations=raw.astype(np.float32), actions=act, terminals=term)
    out = dfplan_data("env=ogbench-cube-single", f"npz={path}", root=cube_data)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = list(minari.load_dataset("dfplan/ogbench/cube-single-cube-single-play-v0-v1").iterate_episodes())
    assert len(imported) == 2 and imported[0].observations["observation"].shape == (og.EPISODE_STEPS, 31)
    # the motion-recovered subgoals agree with the oracle's own task ends on most steps
    ours = eps[0].observations["desired_goal"][:-1]
    theirs = imported[0].observations["desired_goal"]
    assert np.mean(np.linalg.norm(ours - theirs, axis=-1) < R) > 0.7
    # dfplan-train takes the file itself (imported once, then found by its id)
    out = cli("dfplan-train", "env=ogbench-cube-single", f"dataset={path}", "+experiment=ogbench", "train.steps=2",
              "train.batch_size=4", "train.progress=false", "model.hidden=16", "model.mlp_hidden=16",
              f"out={tmp_path / 'run'}", "device=cpu", root=cube_data)
    assert out.returncode == 0 and (tmp_path / "run" / "final.pt").is_file(), out.stderr[-2000:]
    out = cli("dfplan-train", "env=ogbench-cube-single", f"dataset={tmp_path / 'missing.npz'}", root=cube_data)
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((5, 7)))
    out = dfplan_data("env=ogbench-cube-single", f"npz={bad}", root=cube_data, timeout=300)
    assert out.returncode == 2 and "not an OGBench dataset" in out.stderr and "Traceback" not in out.stderr


def test_tiny_df_controls_the_real_env(cube_data, tmp_path):

    overrides = [f"out={tmp_path / 'df'}", "env=ogbench-cube-single", "+experiment=ogbench", "train.steps=30",
                 "train.batch_size=8", "train.warmup_steps=5", "train.ema_start=5", "train.val_every=30",
                 "train.checkpoint_every=30", "train.progress=false", "device=cpu", "model.hidden=32",
                 "model.mlp_hidden=32", "model.emb_dim=16", "model.num_levels=100", "dataset=test/cube-v0"]
    final = train_on_tiny_data(cube_data, overrides, seed=0)
    planner = dfplan.load_planner(final, device="cpu", ddim_steps=2)
    assert planner.task.name == "ogbench-cube-single" and planner.goal_dims == (19, 20, 21)
    r = run.evaluate(checkpoint=final, episodes=2, batch=2, horizon=4, ddim_steps=2, progress=False,
                     max_episode_steps=24, plot=tmp_path / "cube.png")
    assert r.summary["episodes"] == 2 and r.summary["failures"] == 0 and (tmp_path / "cube.png").stat().st_size > 10_000


@pytest.mark.parametrize("goal", ["fixed", "whole"])
def test_a_plain_ogbench_observation_reads_as_our_wrapper_makes_it(goal):
    """A user's loop on `ogbench.make_env_and_datasets(..., env_only=True)`: the raw observation plus
    `info["goal"]` give the controllers the dict our wrapper gives in the same goal mode, step after step (our
    subgoal layer's choices included)."""
    ours = get_task("ogbench-cube-double").make_env(goal=goal)
    plain = og._make_raw("ogbench-cube-double")
    adapter = get_task("ogbench-cube-double").observation_adapter(goal)
    mine, _ = ours.reset(seed=3)
    raw, info = plain.reset(seed=3, options=dict(task_id=og.task_id_of(3)))
    goal = info["goal"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        read = adapter(raw, goal=goal)
        for key in ("observation", "desired_goal", "achieved_goal"):
            assert np.allclose(read[key], mine[key]), key
        action = rng.uniform(-1, 1, 5)
        mine, *_ = ours.step(action)
        raw, *_ = plain.step(action)
    batched = adapter(np.stack([raw, raw]), goal=np.stack([goal, goal]))
    assert batched["observation"].shape == (2, 43)

    with pytest.raises(UserError, match="goal=info"):
        adapter(raw)
    with pytest.raises(UserError, match=r"\[37\]"):
        adapter(raw[:30], goal=goal[:30])


def test_the_shipped_cube_planner_reads_the_whole_goal_unless_told_otherwise(tmp_path):
    """The shipped cube-double DF stores the papers' protocol (goal=whole, object_choice=search): evaluation runs it
    and a plain env's goal is read that way; goal=fixed switches both to our subgoal layer; BC keeps the task's
    default (the layer it was trained on); a goal mode the task lacks is refused."""
    task = get_task("ogbench-cube-double")
    df = make_controller("df", task, device="cpu")
    assert df.goal == "whole" and df.adapter.subgoals == "all" and df.chooser is not None
    layer = make_controller("df", task, device="cpu", goal="fixed")
    assert layer.goal == "fixed" and layer.adapter.subgoals == "one_cube"
    raw, info = og._make_raw("ogbench-cube-double").reset(seed=2, options=dict(task_id=og.task_id_of(2)))
    whole, _ = task.make_env(goal="whole").reset(seed=2)
    assert np.allclose(df.adapter(raw, goal=info["goal"])["desired_goal"], whole["desired_goal"])
    short = dict(episodes=1, batch=1, max_episode_steps=2, progress=False, device="cpu")
    assert run.evaluate("ogbench-cube-double", **short).summary["goal"] == "whole"
    fixed = run.evaluate("ogbench-cube-double", goal="fixed", **short).summary
    assert fixed["goal"] == "fixed" and fixed["settings"]["goal"] == "fixed"
    assert run.evaluate("ogbench-cube-double", planner="bc", **short).summary["goal"] == "fixed"
    with pytest.raises(UserError, match="goal"):
        make_controller("df", get_task("fetch-push"), device="cpu", goal="whole")
    out = cli("dfplan-eval", "env=ogbench-cube-double", "goal=fixed", "episodes=1", "batch=1", "max_episode_steps=2",
              "progress=false", "device=cpu", root=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["goal"] == "fixed", out.stderr


def test_grasp_rules_face_the_cube_and_reopen_an_empty_grasp():
    """`grasp_align`: near a cube with the gripper open, the target's effector yaw is the cube's yaw plus the
    multiple of 90 degrees nearest the effector's own; far from it, or closed on it, the yaw is left alone; a gripper
    closed with no cube near the effector is told to open, one closed on a cube is not."""
    yaw = lambda cos_sin: np.degrees(np.arctan2(cos_sin[..., 1], cos_sin[..., 0]))  # noqa: E731
    states = np.zeros((3, og.PROPRIO_DIMS + 2 * og.CUBE_DIMS))
    cube = og.PROPRIO_DIMS + og.CUBE_DIMS  # the second cube, near the effector in every row
    states[:, cube:cube + 3] = [1.0, 1.0, 0.2]
    states[:, og.PROPRIO_DIMS:og.PROPRIO_DIMS + 3] = [-2.0, -2.0, 0.2]
    states[:, cube + og.CUBE_YAW[0]], states[:, cube + og.CUBE_YAW[1]] = np.cos(np.radians(3)), np.sin(np.radians(3))
    states[:, og.EFFECTOR_POSE[3]], states[:, og.EFFECTOR_POSE[4]] = np.cos(np.radians(-50)), np.sin(np.radians(-50))
    states[:, list(og.EFFECTOR)] = [[1.2, 1.0, 1.0], [3.0, 1.0, 1.0], [1.0, 1.0, 0.3]]  # near, far, near
    states[1:, og.GRIPPER] = [2.9, 1.68]  # row 1 closed on nothing, row 2 holds the cube
    targets = states.copy()
    targets[:, list(og.EFFECTOR_POSE[3:])] = [np.cos(np.radians(-42)), np.sin(np.radians(-42))]  # between two faces
    out = get_task("ogbench-cube-double").align_grasp(states, targets, radius=0.5)
    assert np.allclose(yaw(out[:, list(og.EFFECTOR_POSE[3:])]), [-87.0, -42.0, -42.0])
    assert out[:, og.GRIPPER].tolist() == [0.0, 0.0, 1.68]
    changed = [*og.EFFECTOR_POSE[3:], og.GRIPPER]
    assert np.array_equal(np.delete(out, changed, 1), np.delete(targets, changed, 1))
    task = get_task("ogbench-cube-single")
    assert make_controller("df", task, device="cpu").grasp_align == 2.0  # stored in the shipped checkpoint
    assert make_controller("df", task, device="cpu", grasp_align=0.0).grasp_align is None  # 0: off
    assert make_controller("df", task, device="cpu", execution="actions").grasp_align is None  # the stored one too
    with pytest.raises(UserError, match="execution=actions has none"):
        make_controller("df", task, device="cpu", execution="actions", grasp_align=0.5)
    with pytest.raises(UserError, match="no grasp alignment"):
        make_controller("df", get_task("fetch-push"), device="cpu", grasp_align=0.5)
    diffuser = make_controller("diffuser", task, device="cpu", grasp_align=0.5)  # its low-level execution, aligned
    assert diffuser.grasp_align == 0.5 and diffuser.settings_record()["grasp_align"] == 0.5
    with pytest.raises(UserError, match="grasp_align applies to a Diffuser plan reached by the low-level policy"):
        make_controller("diffuser", task, device="cpu", execution="track", grasp_align=0.5)


def test_tiny_lowlevel_policy_trains_and_reaches_the_plans(cube_data, tmp_path):
    """`dfplan-train model=lowlevel` on the play data; DF and Diffuser hand it their plans (execution=lowlevel)."""

    overrides = [f"out={tmp_path / 'll'}", "env=ogbench-cube-single", "model=lowlevel", "train=lowlevel_cpu",
                 "train.steps=30", "train.batch_size=8", "train.warmup_steps=5", "train.ema_start=5",
                 "train.val_every=30", "train.checkpoint_every=30", "train.progress=false", "device=cpu",
                 "model.hidden=32", "dataset=test/cube-v0"]
    task = get_task("ogbench-cube-single")
    final = train_on_tiny_data(cube_data, overrides, seed=0)
    reacher = load_lowlevel(final, device="cpu")
    assert reacher.goal_dims == task.plan_dims and reacher.k == 10 and reacher.task.name == task.name
    r = run.evaluate("ogbench-cube-single", episodes=2, batch=2, progress=False, max_episode_steps=24,
                     execution="lowlevel", lowlevel=str(final), device="cpu")
    assert r.summary["failures"] == 0 and r.summary["settings"]["execution"] == "lowlevel"
    assert r.controller.reacher is not None
    diffuser = make_controller("diffuser", task, device="cpu", execution="lowlevel", lowlevel=str(final))
    actions = drive(diffuser, 12, seed=1, env_name="ogbench-cube-single")
    assert actions.shape == (12, 5) and np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
    with pytest.raises(UserError, match="43-D"):  # a policy for one cube cannot reach a two-cube plan
        make_controller("df", get_task("ogbench-cube-double"), device="cpu", execution="lowlevel", lowlevel=str(final))


def test_df_trained_on_the_plan_dims_plans_whole_observations(cube_data, tmp_path):
    """`state_dims=plan`: the model learns only the effector, gripper and cube dims; plans come back as whole
    observations, the dims it does not plan held at their current value, and the low-level policy reads them."""

    overrides = [f"out={tmp_path / 'df'}", "env=ogbench-cube-single", "+experiment=ogbench", "state_dims=plan",
                 "train.steps=10", "train.batch_size=4", "train.warmup_steps=2", "train.ema_start=2",
                 "train.val_every=10", "train.checkpoint_every=10", "train.progress=false", "device=cpu",
                 "model.hidden=16", "model.mlp_hidden=16", "model.emb_dim=8", "model.num_levels=100",
                 "dataset=test/cube-v0"]
    task = get_task("ogbench-cube-single")
    final = train_on_tiny_data(cube_data, overrides)
    planner = dfplan.load_planner(final, device="cpu", ddim_steps=2)
    assert planner.state_dims == task.plan_dims and planner.model.cfg.obs_dim == 9 and planner.obs_dim == 31
    obs, _ = task.make_env().reset(seed=2)
    x = torch.as_tensor(obs["observation"][None], dtype=torch.float32)
    plan = planner.plan(x, torch.as_tensor(obs["desired_goal"][None], dtype=torch.float32), horizon=3)
    assert plan.states.shape == (1, 13, 31)
    held = [d for d in range(31) if d not in task.plan_dims]
    assert torch.equal(plan.states[0, :, held], x[:, held].expand(13, -1))
    assert not torch.equal(plan.states[0, 1:, list(task.plan_dims)], x[:, list(task.plan_dims)].expand(12, -1))
    c = dfplan.MPCController(planner, horizon=3, replan_every=4, memory=True)
    c.reset(seed=0)
    env = task.make_env()
    obs, _ = env.reset(seed=2)
    for _ in range(9):  # two replans, the latent advanced with whole observations
        obs, *_ = env.step(c.act(obs))
    assert c.plans_made == 3 and c.failures == 0


def test_diffuser_trained_on_the_plan_and_goal_dims_plans_whole_observations(cube_data, tmp_path):
    """`model=diffuser state_dims=plan_goal`: the Diffuser learns the effector, gripper, cube and subgoal-offset dims
    (the offsets tell it the goal); its plans come back as whole observations that the low-level policy reaches."""

    overrides = [f"out={tmp_path / 'diffuser'}", "env=ogbench-cube-single", "model=diffuser", "train=diffuser_cpu",
                 "+experiment=ogbench_diffuser", "state_dims=plan_goal", "model.horizon=16", "model.dim=8",
                 "model.n_diffusion_steps=4", "train.steps=6", "train.batch_size=4", "train.warmup_steps=2",
                 "train.ema_start=2", "train.val_every=6", "train.checkpoint_every=6", "train.progress=false",
                 "device=cpu", "dataset=test/cube-v0"]
    task = get_task("ogbench-cube-single")
    final = train_on_tiny_data(cube_data, overrides)
    planner = load_diffuser(final, device="cpu", seed=0)
    dims = (*task.plan_dims, *task.goal_input_dims)
    assert planner.state_dims == dims and planner.model.cfg.obs_dim == 12 and planner.obs_dim == 31
    obs, _ = task.make_env().reset(seed=2)
    x = torch.as_tensor(obs["observation"][None], dtype=torch.float32)
    plan = planner.plan(x, torch.as_tensor(obs["desired_goal"][None], dtype=torch.float32))
    assert plan.states.shape == (1, 16, 31) and torch.equal(plan.states[:, 0], x)
    held = [d for d in range(31) if d not in dims]
    assert torch.equal(plan.states[0, :, held], x[:, held].expand(16, -1))
    assert not torch.equal(plan.states[0, 1:, list(dims)], x[:, list(dims)].expand(15, -1))
    controller = make_controller("diffuser-replan", task, checkpoint=str(final), device="cpu", execution="lowlevel",
                                 replan_every=4)
    actions = drive(controller, 9, seed=1, env_name="ogbench-cube-single")
    assert actions.shape == (9, 5) and np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
    assert controller.n_plans == 3
    tuned = export_for_inference(final, tmp_path / "tuned.pt", execution={
        "mode": "replan", "replan_every": 4, "execution": "lowlevel", "snap_radius": 0.8})
    stored = make_controller("diffuser", task, checkpoint=str(tuned), device="cpu")
    assert (stored.mode, stored.replan_every, stored.snap_radius) == ("replan", 4, 0.8) and stored.reacher is not None
    changed = make_controller("diffuser", task, checkpoint=str(tuned), device="cpu", replan_every=8, snap_radius=0.5)
    assert (changed.mode, changed.replan_every, changed.snap_radius) == ("replan", 8, 0.5) and changed.reacher
    paper = make_controller("diffuser", task, checkpoint=str(tuned), device="cpu", execution="track")
    assert (paper.mode, paper.reacher, paper.snap_radius) == ("plan_once", None, None)
    bad = export_for_inference(final, tmp_path / "bad.pt", execution={"mode": "replan", "replan_every": 0})
    with pytest.raises(UserError, match="stores a bad Diffuser execution: replan_every=0"):
        make_controller("diffuser", task, checkpoint=str(bad), device="cpu")
    with pytest.raises(UserError, match="snap_radius=-1"):
        make_controller("diffuser", task, checkpoint=str(tuned), device="cpu", snap_radius=-1.0)
    with pytest.raises(UserError, match="condition_last=false"):
        train_on_tiny_data(cube_data, [f"out={tmp_path / 'bad'}", *overrides[1:], "model.condition_last=true"])
    with pytest.raises(UserError, match="leaves a Diffuser no goal"):  # the plan dims alone hold no goal
        train_on_tiny_data(cube_data, [f"out={tmp_path / 'blind'}", *overrides[1:], "state_dims=plan"])
