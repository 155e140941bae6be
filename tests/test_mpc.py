import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import drive

import dfplan
from dfplan import make_env, run
from dfplan.df.controller import MPCController, tokens_to_goal
from dfplan.errors import UserError
from dfplan.evaluation import run_episodes
from dfplan.guidance import GeodesicGuide, goal_distance, revisit_penalty
from dfplan.registry import load_planner
from dfplan.tasks import get_task
from dfplan.types import snap_to_goal


@pytest.fixture
def planner(tiny_checkpoint):
    return load_planner(tiny_checkpoint, device="cpu", ddim_steps=4, guidance_scale=0.5)


def test_controller_contract_single_and_batched(planner):
    env = make_env("pointmaze-umaze")
    c = MPCController(planner, horizon=4)
    obs, _ = env.reset(seed=0)
    c.reset(seed=0)
    for _ in range(10):
        a = c.act(obs)
        assert a.shape == (2,) and np.isfinite(a).all() and np.abs(a).max() <= 1.0
        obs, *_ = env.step(a)
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    c.reset(seed=1)
    assert c.act(batch).shape == (2, 2)


def test_same_seed_same_actions(planner):
    runs = [drive(MPCController(planner, horizon=4), 12, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_nan_observation_gives_a_safe_action_and_is_counted(planner):
    c = MPCController(planner, horizon=4)
    c.reset(seed=0)
    obs = {"observation": np.array([np.nan, 0, 0, 0]), "desired_goal": np.array([1.0, 1.0])}
    a = c.act(obs)
    assert np.isfinite(a).all() and c.failures == 1


def test_memory_changes_the_latent_path(planner):
    env = make_env("pointmaze-umaze")
    latents = {}
    for memory in (True, False):
        c = MPCController(planner, horizon=4, memory=memory)
        c.reset(seed=0)
        obs, _ = env.reset(seed=0)
        for _ in range(9):
            obs, *_ = env.step(c.act(obs))
        latents[memory] = c.z
    assert latents[False] is None  # memoryless: the latent is rebuilt from the observation at each plan
    fresh = planner.initial_latent(torch.as_tensor(obs["observation"][None], dtype=torch.float32))
    assert not torch.allclose(latents[True], fresh)
    with pytest.raises(ValueError, match="multiple of frame_stack"):
        MPCController(planner, horizon=4, replan_every=3, memory=True)


def test_history_guidance_gives_the_planner_a_latent_of_the_present(planner, monkeypatch):
    seen = []
    plan_from = planner.plan_from

    def spy(z, obs, *args, z_now=None, **kw):
        seen.append(z_now)
        return plan_from(z, obs, *args, z_now=z_now, **kw)

    monkeypatch.setattr(planner, "plan_from", spy)
    for w, memory in ((1.0, True), (2.0, False), (2.0, True)):
        planner.settings = replace(planner.settings, sampler=replace(planner.settings.sampler, history_guidance=w))
        c = MPCController(planner, horizon=4, memory=memory)
        actions = drive(c, 9)
        assert np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
    n = len(seen) // 3
    assert all(z is None for z in seen[:2 * n])  # plain memory, or no memory: one latent
    assert all(z is not None and z.shape[0] == 1 for z in seen[2 * n:])


def test_memory_window_keeps_only_the_last_tokens(planner):
    def run(**kw):
        c = MPCController(planner, horizon=4, replan_every=4, **kw)
        return c, drive(c, 24)

    c, window_actions = run(memory=True, memory_tokens=2)
    assert len(c.window) == 2 and all(w[1].shape[1] == planner.frame_stack for w in c.window)
    _, zero_window = run(memory=True, memory_tokens=0)
    _, memoryless = run(memory=False)
    np.testing.assert_array_equal(zero_window, memoryless)  # an empty window is the memoryless controller
    assert not np.array_equal(window_actions, memoryless)
    with pytest.raises(ValueError, match="memory_tokens"):
        MPCController(planner, horizon=4, memory_tokens=-1)


def test_warm_start_feeds_the_unexecuted_rest_of_the_last_plan(tiny_checkpoint):
    planner = load_planner(tiny_checkpoint, device="cpu", ddim_steps=4, warm_start_step=2)
    seen = []
    plan_from = planner.plan_from
    planner.plan_from = lambda *a, init=None, **kw: (seen.append(init), plan_from(*a, init=init, **kw))[1]
    actions = drive(MPCController(planner, horizon=5, replan_every=8), 17)
    assert np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
    assert seen[0] is None and [s.shape[1] for s in seen[1:]] == [3, 3]  # 5 tokens planned, 2 executed


def test_horizon_shrinks_with_the_remaining_time(planner):
    c = MPCController(planner, horizon=8, max_episode_steps=20)
    c.t = 0
    assert c._horizon_now() == 5
    c.t = 18
    assert c._horizon_now() == 1


def test_short_real_evaluation(planner):
    c = MPCController(planner, horizon=4)
    task = get_task("pointmaze-umaze")
    result = run_episodes(c, task, episodes=2, batch=2, max_episode_steps=24, progress=False, keep_plans=1)
    s = result.summary(task, (0.0, 100.0))
    assert s["episodes"] == 2 and 0 <= s["success_rate"] <= 1 and s["failures"] == 0
    assert result.episodes[0].path.shape == (25, 2) and len(result.episodes[0].plans) == 6
    assert "normalized_score_mean" in s


def test_run_api_returns_the_summary_and_draws(tiny_checkpoint, tmp_path):

    r = run.evaluate(checkpoint=tiny_checkpoint, episodes=2, batch=2, ddim_steps=3, horizon=2, max_episode_steps=16,
                     plot=tmp_path / "paths.png", progress=False)
    line = json.loads(json.dumps(r.summary))
    for key in ("env", "planner", "goal", "episodes", "seed", "normalized_score_mean", "normalized_score_se",
                "success_rate", "mean_time_to_goal", "seconds", "commit", "settings"):
        assert key in line
    assert line["env"] == "pointmaze-umaze" and line["settings"]["horizon"] == 2  # the task came from the checkpoint
    assert r.line.startswith("pointmaze-umaze (fixed goal), 2 episodes")
    assert (tmp_path / "paths.png").stat().st_size > 10_000


def test_controller_from_a_planner_takes_the_checkpoint_settings():
    """MPCController(planner) is the controller dfplan-eval runs: the tuned horizon, replanning, memory, objective."""

    planner = dfplan.load_planner("pointmaze-umaze")
    c = MPCController(planner)
    tuned = planner.settings.controller
    assert (c.horizon, c.replan_every, c.memory) == (tuned.horizon, tuned.replan_every, tuned.memory) == (16, 8, False)
    assert isinstance(c.objective, GeodesicGuide)
    c2 = MPCController(planner, horizon=4, objective="goal_distance")
    assert c2.horizon == 4 and not isinstance(c2.objective, GeodesicGuide)


def test_act_refuses_wrong_shapes_and_a_changed_batch(planner):
    c = MPCController(planner, horizon=4)
    c.reset(seed=0)
    good = {"observation": np.zeros((2, 4)), "desired_goal": np.ones((2, 2))}
    c.act(good)
    with pytest.raises(ValueError, match="reset"):
        c.act({"observation": np.zeros((3, 4)), "desired_goal": np.ones((3, 2))})
    c.reset()
    with pytest.raises(ValueError, match=r"observations \[N, 4\]"):
        c.act({"observation": np.zeros((2, 5)), "desired_goal": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"goals \[N, 2\]"):
        c.act({"observation": np.zeros((2, 4)), "desired_goal": np.ones((2, 3))})


def test_tokens_to_goal_follows_the_cost_to_go():
    """Variable horizon: ceil(distance / token_reach) tokens, within [shortest, longest]; unreadable costs: longest."""

    obs = torch.tensor([[1.0, 1.0, 0, 0], [2.0, 1.0, 0, 0], [4.0, 1.0, 0, 0], [100.0, 1.0, 0, 0], [np.nan, 1, 0, 0]])
    goal = torch.tensor([[1.0, 1.0]]).expand(5, 2)
    tokens = tokens_to_goal(goal_distance(goal), obs, act_dim=2, token_reach=0.5, shortest=2, longest=8)
    np.testing.assert_array_equal(tokens, [2, 2, 6, 8, 8])


def test_variable_horizon_plans_each_env_over_the_tokens_it_needs(planner):
    """An env at its goal and one far from it, planned together with min_horizon: the near one's plan is the plan
    that horizon min_horizon gives alone (same seed), and the batch's plan is cut to that length."""
    obs = {"observation": np.array([[1.0, 1.0, 0, 0], [-1.0, -1.0, 0, 0]]), "desired_goal": np.array([[1.0, 1.0]] * 2)}
    c = MPCController(planner, horizon=6, min_horizon=2, token_reach=0.5, replan_every=4, memory=False,
                      objective="goal_distance")
    c.reset(seed=0)
    c.act(obs)
    assert c.plan.shape[:2] == (2, 2 * planner.frame_stack)
    near = torch.tensor(obs["observation"][:1], dtype=torch.float32)
    alone = planner.plan_from(planner.initial_latent(near), near, torch.tensor([[1.0, 1.0]]), 2,
                              generator=torch.Generator().manual_seed(0), objective=c.objective(torch.ones(1, 2)))
    np.testing.assert_allclose(c.plan[0], alone.actions[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="min_horizon"):
        MPCController(planner, horizon=4, min_horizon=5)
    with pytest.raises(ValueError, match="replan_every"):
        MPCController(planner, horizon=8, min_horizon=1, replan_every=8)
    planner.settings = replace(planner.settings, sampler=replace(planner.settings.sampler, warm_start_step=1))
    with pytest.raises(ValueError, match="warm-start"):
        MPCController(planner, horizon=8, min_horizon=2)


def test_snap_radius_hands_the_tracker_the_goal_once_the_plan_or_the_point_is_near_it(planner):
    """snap_radius: the target's goal dims become the goal where the planned position, or the object's current one,
    lies within the radius of it, per goal object; the other dims stay the plan's; off, the target is the planned
    state itself."""

    targets = []
    obs, _ = make_env("pointmaze-umaze").reset(seed=0)
    for radius in (None, 100.0):
        c = MPCController(planner, horizon=4, execution="track", snap_radius=radius)
        c.tracker = lambda states, target, planned: targets.append(target.copy()) or np.zeros((len(states), 2))
        c.reset(seed=0)
        c.act(obs)
        planned = c.plan_states[:, c.subgoal_ahead]  # the first act(): plan_step 0
        if radius is None:
            np.testing.assert_array_equal(targets[-1], planned)
        else:
            np.testing.assert_allclose(targets[-1][:, :2], obs["desired_goal"][None], rtol=1e-6)
            np.testing.assert_array_equal(targets[-1][:, 2:], planned[:, 2:])
    target = np.array([[0.5, 2.0, 0.1, 0.2], [0.5, 3.0, 0.1, 0.2]])  # two one-dim "objects", x and y
    snapped = snap_to_goal(target, np.array([[0.5005, 3.0], [0.6, 3.0005]]), (0, 1), 2, 1e-3)
    np.testing.assert_allclose(snapped, [[0.5005, 2.0, 0.1, 0.2], [0.5, 3.0005, 0.1, 0.2]])
    far = np.array([[5.0, 5.0, 0.1, 0.2]] * 2)  # planned away from the goal; the point itself near it, or not
    held = snap_to_goal(far, np.zeros((2, 2)), (0, 1), 1, 1.0, current=np.array([[0.5, 0.0, 0, 0], [2.0, 0.0, 0, 0]]))
    np.testing.assert_allclose(held, [[0.0, 0.0, 0.1, 0.2], [5.0, 5.0, 0.1, 0.2]])
    with pytest.raises(UserError, match="snap_radius"):
        MPCController(planner, horizon=4, execution="actions", snap_radius=0.5)
    planner.settings = replace(planner.settings, controller=replace(planner.settings.controller, execution="track",
                                                                    snap_radius=0.5))  # as a checkpoint stores them
    assert MPCController(planner, horizon=4).snap_radius == 0.5
    assert MPCController(planner, horizon=4, execution="actions").snap_radius is None  # a stored snap is the stored
    #   execution's: asking for the planner's own actions drops it


def test_revisit_penalty_charges_plans_by_the_visits_near_them():
    """Each planned position pays for the recorded visits within a few radii of it; far ones cost ~nothing, and the
    gradient stays finite on a visited point itself."""
    visited = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [4.0, 0.0]]])  # two visits at the origin, one at x = 4
    through = torch.tensor([[[9.0, 9.0], [0.0, 0.0], [1.0, 0.0]]], requires_grad=True)  # the start row is not charged
    away = torch.tensor([[[9.0, 9.0], [0.0, 20.0], [1.0, 20.0]]])
    penalty = revisit_penalty(visited, weight=2.0, radius=1.0)
    acts = torch.zeros(1, 2, 2)
    expected = -2.0 * (2 + np.exp(-8.0) + 2 * np.exp(-0.5) + np.exp(-4.5))
    cost = penalty(through, acts)
    np.testing.assert_allclose(cost.item(), expected, rtol=1e-5)
    assert abs(penalty(away, acts).item()) < 1e-20
    cost.sum().backward()
    assert torch.isfinite(through.grad).all() and through.grad[0, 2, 0] > 0  # ascending J moves x = 1 away from 0
    at_goal = revisit_penalty(visited, weight=2.0, radius=1.0, goal=torch.tensor([[0.0, 0.0]]))(through, acts)
    np.testing.assert_allclose(at_goal.item(), -2.0 * (1 - np.exp(-0.5)) * (2 * np.exp(-0.5) + np.exp(-4.5)),
                               rtol=1e-5)  # nothing for standing on the goal, less near it


def test_revisit_cost_records_the_path_and_turns_guidance_away_from_it(planner):
    env = make_env("pointmaze-umaze")
    obs, _ = env.reset(seed=0)
    plain = MPCController(planner, horizon=4)
    plain.reset(seed=0)
    c = MPCController(planner, horizon=4, revisit_cost=0.5, revisit_radius=0.5)
    c.reset(seed=0)
    for _ in range(3 * c.fs):
        obs, *_ = env.step(c.act(obs))
        plain.act(obs)
    assert len(c.visited) == 3 and plain.visited == []  # one record per token, none when off
    goal = torch.as_tensor(obs["desired_goal"][None])
    here = torch.as_tensor(c.visited[-1], dtype=torch.float32)[:, None].expand(1, 3, 2)  # a plan that stays put
    states = torch.cat([here, torch.zeros(1, 3, 2)], -1)  # [x, y, vx, vy]
    acts = torch.zeros(1, 2, 2)
    assert c._guidance(goal)(states, acts) < plain._guidance(goal)(states, acts)  # standing where it has been costs
    with pytest.raises(UserError, match="revisit_cost"):
        MPCController(planner, horizon=4, revisit_cost=-1.0)
    with pytest.raises(UserError, match="cannot tell a blocked step"):  # PointMaze-v3's point has momentum: no rule
        MPCController(planner, horizon=4, execution="track", blocked_cost=1.0)
