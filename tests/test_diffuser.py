"""The Diffuser baseline: temporal U-Net shapes, loss, inpainting, the tracking controller, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from dfplan.checkpoint import CheckpointError, save_checkpoint
from dfplan.data import Batch, Normalizer
from dfplan.diffuser.controller import DiffuserController, track_action, tracking_target
from dfplan.diffuser.model import DiffuserConfig, DiffuserModel, TemporalUnet
from dfplan.diffuser.planner import DiffuserPlanner, load_diffuser
from dfplan.envs import make_env
from dfplan.registry import build_model
from dfplan.training import train
from dfplan.types import Controller, Planner

TINY = dict(obs_dim=4, act_dim=2, horizon=16, n_diffusion_steps=5, dim=8, dim_mults=(1, 2, 4))


def tiny_model(**overrides) -> DiffuserModel:
    torch.manual_seed(0)
    return build_model("diffuser", **{**TINY, **overrides})


def umaze_normalizer() -> Normalizer:
    """Min-max ranges close to the U-Maze data's: positions within +-1.5, velocities within +-5."""
    obs = np.array([[-1.5, -1.5, -5, -5], [1.5, 1.5, 5, 5]], dtype=np.float32)
    act = np.array([[-1, -1], [1, 1]], dtype=np.float32)
    return Normalizer.fit(obs, act, mode="minmax")


def tiny_planner(**overrides) -> DiffuserPlanner:
    return DiffuserPlanner(tiny_model(**overrides), umaze_normalizer(), device="cpu", seed=0)


def random_batch(B=3, L=16, Ds=4, Da=2) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(torch.rand(B, L + 1, Ds, generator=g) * 2 - 1, torch.rand(B, L, Da, generator=g) * 2 - 1,
                 torch.ones(B, L, dtype=torch.bool))


# --- model -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim_mults,horizons", [((1, 4, 8), [4, 16, 128]), ((1, 2), [2, 6, 30]), ((1,), [3, 7])])
def test_unet_keeps_the_shape_for_every_divisible_horizon(dim_mults, horizons):
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=dim_mults)
    for H in horizons:
        x = torch.randn(2, H, 6)
        assert net(x, torch.tensor([1, 4])).shape == (2, H, 6)


def test_unet_rejects_a_horizon_it_cannot_halve():
    net = TemporalUnet(transition_dim=6, dim=8, dim_mults=(1, 2, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 10, 6), torch.tensor([1]))


def test_default_config_matches_the_paper_size():
    model = build_model("diffuser", obs_dim=4, act_dim=2)
    assert model.cfg.dim_mults == (1, 4, 8) and model.cfg.horizon == 128 and model.cfg.n_diffusion_steps == 64
    assert 3.5e6 < sum(p.numel() for p in model.parameters()) < 3.9e6  # the original maze2d U-Net: ~3.7M


@pytest.mark.parametrize("bad,match", [(dict(horizon=18), "divisible"), (dict(dim=6), "n_groups"),
                                       (dict(prediction="v"), "prediction"), (dict(n_diffusion_steps=0), ">= 1")])
def test_config_errors_are_clear(bad, match):
    with pytest.raises(ValueError, match=match):
        DiffuserConfig(**{**TINY, **bad})


def test_unknown_config_key_is_rejected():
    with pytest.raises(ValueError, match="unknown diffuser config keys"):
        build_model("diffuser", **TINY, frame_stack=4)


def test_loss_is_finite_and_trains_every_parameter():
    model = tiny_model()
    loss = model(random_batch(L=20))  # longer windows than H: only the first H steps are used
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.net.parameters())


def test_padding_past_a_run_end_gets_no_loss():
    """Action t counts where step t is in the run; state t where it was observed (t = 0 or step t-1 in the run)."""
    batch = random_batch()
    batch.mask[0, 10:] = False
    x0, valid = tiny_model().trajectories(batch)
    assert x0.shape == (3, 16, 6) and torch.equal(x0[:, :, 2:], batch.obs[:, :16])
    assert valid[0, :10, :2].all() and not valid[0, 10:, :2].any()  # actions
    assert valid[0, :11, 2:].all() and not valid[0, 11:, 2:].any()  # states
    assert valid[1:].all()


def test_loss_does_not_depend_on_the_conditioned_states_noise():
    """The first/last states are inpainted into x_k, so the network sees their clean values at any level."""
    model = tiny_model()
    seen = []
    model.net.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    batch = random_batch()
    model.batch_loss(batch, generator=torch.Generator().manual_seed(0))
    x_k = seen[0]
    assert torch.equal(x_k[:, 0, 2:], batch.obs[:, 0]) and torch.equal(x_k[:, -1, 2:], batch.obs[:, 15])


def test_short_windows_give_a_clear_error():
    with pytest.raises(ValueError, match="window_steps >= 16"):
        tiny_model().batch_loss(random_batch(L=8))


# --- planner -----------------------------------------------------------------------------------------

def test_plan_holds_the_inpainted_start_and_goal_exactly():
    planner = tiny_planner()
    assert isinstance(planner, Planner)
    obs = torch.tensor([[-1.0, -1.0, 0.3, -0.2], [0.5, 1.0, 0.0, 1.0]])
    goal = torch.tensor([[1.0, 1.0], [-1.0, 0.5]])
    seen = []
    planner.model.net.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    plan = planner.plan(obs, goal)
    assert plan.actions.shape == (2, 15, 2) and plan.states.shape == (2, 16, 4) and plan.horizon == 15
    assert torch.equal(plan.states[:, 0], obs)
    assert torch.equal(plan.states[:, -1], torch.cat([goal, torch.zeros(2, 2)], dim=1))
    assert plan.info["seconds"] > 0 and plan.info["last_action"].shape == (2, 2)
    # every one of the K network calls saw the conditions in normalized units
    nz = planner.normalizer
    assert len(seen) == planner.model.cfg.n_diffusion_steps
    for x in seen:
        assert torch.allclose(x[:, 0, 2:], nz.norm_obs(obs))
        assert torch.allclose(x[:, -1, 2:], nz.norm_obs(plan.states[:, -1]))
    assert torch.isfinite(plan.actions).all() and torch.isfinite(plan.states).all()


def test_same_seed_same_plan():
    obs, goal = torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    a = tiny_planner().plan(obs, goal, generator=torch.Generator().manual_seed(5))
    b = tiny_planner().plan(obs, goal, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.states, b.states)


@pytest.mark.parametrize("obs,goal,kwargs,match", [
    ([[0.0, 0.0, 0.0]], [[1.0, 1.0]], {}, r"obs must be \[B, 4\]"),
    ([0.0, 0.0, 0.0, 0.0], [[1.0, 1.0]], {}, r"obs must be \[B, 4\]"),
    ([[0.0, 0.0, 0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], {}, "goal must be"),
    ([[0.0, 0.0, 0.0, 0.0]], [[1.0] * 5], {}, "goal must be"),
    ([[float("nan"), 0.0, 0.0, 0.0]], [[1.0, 1.0]], {}, "finite"),
    ([[0.0, 0.0, 0.0, 0.0]], [[float("inf"), 1.0]], {}, "finite"),
    ([[0.0, 0.0, 0.0, 0.0]], [[1.0, 1.0]], {"horizon": 32}, "fixed horizon of 16"),
])
def test_bad_plan_inputs_give_clear_errors(obs, goal, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_planner().plan(torch.tensor(obs), torch.tensor(goal), **kwargs)


def test_planner_rejects_a_mismatched_normalizer():
    with pytest.raises(ValueError, match="normalizer dims"):
        DiffuserPlanner(tiny_model(obs_dim=6), umaze_normalizer(), device="cpu")


# --- tracking controller -----------------------------------------------------------------------------

def test_track_action_is_diffusers_formula():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected = (t[:, :2] - s[:, :2]) + (t[:, 2:] - s[:, 2:])
    np.testing.assert_allclose(track_action(s, t), expected)
    np.testing.assert_allclose(track_action(s[0], t[0]), expected[0])  # unbatched too
    np.testing.assert_allclose(track_action([0, 0, 1, 1], [0.5, -0.5, 1, 1]), [0.5, -0.5])
    with pytest.raises(ValueError, match="position, velocity"):
        track_action(np.zeros(3), np.zeros(3))


def test_tracking_target_is_the_next_state_then_the_last_position_at_rest():
    states = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    np.testing.assert_array_equal(tracking_target(states, 0), states[:, 1])
    np.testing.assert_array_equal(tracking_target(states, 2), states[:, 3])
    for t in (3, 10):
        target = tracking_target(states, t)
        np.testing.assert_array_equal(target[:, :2], states[:, -1, :2])
        np.testing.assert_array_equal(target[:, 2:], 0.0)


def test_controller_modes_validate_their_arguments():
    planner = tiny_planner()
    with pytest.raises(ValueError, match="mode must be"):
        DiffuserController(planner, mode="mpc")
    with pytest.raises(ValueError, match="needs replan_every"):
        DiffuserController(planner, mode="replan")
    with pytest.raises(ValueError, match="replan_every must be"):
        DiffuserController(planner, mode="actions", replan_every=0)
    with pytest.raises(ValueError, match="desired_goal"):
        DiffuserController(planner).act(np.zeros(4, dtype=np.float32))


@pytest.mark.parametrize("mode,kwargs,plans", [("plan_once", {}, 1), ("replan", {"replan_every": 8}, 3),
                                               ("actions", {}, 2)])
def test_controller_runs_in_pointmaze_with_finite_bounded_actions(mode, kwargs, plans):

    controller = DiffuserController(tiny_planner(), mode=mode, **kwargs)
    assert isinstance(controller, Controller)
    env = make_env("pointmaze-umaze")
    try:
        obs, _ = env.reset(seed=0)
        controller.reset(seed=0)
        for _ in range(20):  # 20 steps: past the 15-step plan, so every mode's end-of-plan branch runs
            action = controller.act(obs)
            assert action.shape == (2,) and action.dtype == np.float32
            assert np.isfinite(action).all() and np.abs(action).max() <= 1.0
            obs, *_ = env.step(action)
    finally:
        env.close()
    assert controller.n_plans == plans and controller.failures == 0


def test_controller_tracks_its_plan_batched_and_replaces_nans():
    controller = DiffuserController(tiny_planner(), mode="plan_once")
    obs = {"observation": np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], np.float32),
           "desired_goal": np.array([[1.0, 1.0], [-1.0, 0.0]], np.float32)}
    action = controller.act(obs)
    expected = np.clip(track_action(obs["observation"], controller.states[:, 1]), -1, 1)
    np.testing.assert_allclose(action, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="call reset"):
        controller.act({k: v[:1] for k, v in obs.items()})
    controller.states[0] = np.nan  # a broken plan: the action is replaced, not passed on
    action = controller.act(obs)
    np.testing.assert_array_equal(action[0], 0.0)
    assert np.isfinite(action).all() and controller.failures == 1


# --- training loop and checkpoints -------------------------------------------------------------------

def test_trains_through_the_shared_loop_and_loads_back(minari_root, monkeypatch, tmp_path):


    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    overrides = ["model=diffuser", "train=diffuser_cpu", f"out={tmp_path}", "train.steps=4", "train.batch_size=4",
                 "train.warmup_steps=2", "train.ema_start=2", "train.val_every=4", "train.val_batches=1",
                 "train.checkpoint_every=4", "train.progress=false", "device=cpu", "dataset=dfplan/pointmaze/umaze-v0"]
    overrides += [f"model.{k}={v}" for k, v in TINY.items() if k not in ("obs_dim", "act_dim", "dim_mults")]
    overrides += ["model.dim_mults=[1,2,4]"]
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.train.window_steps == 16 and cfg.train.normalizer == "minmax"
    final = train(cfg)

    planner = load_diffuser(final, device="cpu", seed=0)
    assert planner.normalizer.mode == "minmax" and planner.horizon == 16
    plan = planner.plan(torch.tensor([[-1.0, -1.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert torch.isfinite(plan.states).all()


def test_load_diffuser_rejects_other_checkpoints(tmp_path):

    path = save_checkpoint(tmp_path / "df.pt",
                           {"model_type": "df_rnn", "model_config": {}, "ema": {}, "normalizer": {}})
    with pytest.raises(CheckpointError, match="not a diffuser one"):
        load_diffuser(path, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_diffuser(tmp_path / "missing.pt", device="cpu")
