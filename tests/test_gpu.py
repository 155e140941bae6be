"""CUDA paths: training with bf16 autocast, CPU/CUDA agreement of the model and planners, MPC on the GPU.

Skipped without CUDA (see conftest.py); on a GPU machine they run with the default test command.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import drive

from dfplan.df.controller import MPCController
from dfplan.registry import load_planner

pytestmark = pytest.mark.gpu

OBS = torch.tensor([[0.5, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, 0.5, 0.0]])
GOAL = torch.tensor([[-1.0, 1.0]] * 3)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm()).item()


def test_training_on_cuda_with_autocast_loads_on_cpu(minari_root, monkeypatch, tmp_path):
    from conftest import train_config

    from dfplan.training import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    cfg = train_config(tmp_path, steps=60)
    cfg.device = "cuda"
    final = train(cfg)
    planner = load_planner(final, device="cpu", ddim_steps=3)
    assert all(p.device.type == "cpu" for p in planner.model.parameters())
    assert torch.isfinite(planner.plan(OBS, GOAL, 4, generator=torch.Generator().manual_seed(0)).states).all()


def test_model_outputs_agree_between_cpu_and_cuda(tiny_checkpoint):
    cpu, gpu = load_planner(tiny_checkpoint, device="cpu"), load_planner(tiny_checkpoint, device="cuda")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 12, cpu.model.cfg.token_dim, generator=g)
    k = torch.randint(0, cpu.model.cfg.num_levels + 1, (8, 12), generator=g)
    z = cpu.model.init_state(torch.randn(8, cpu.obs_dim, generator=g))
    x0_cpu, z_cpu = cpu.model.forward_seq(x, k, z)
    x0_gpu, z_gpu = gpu.model.forward_seq(x.cuda(), k.cuda(), z.cuda())
    assert rel_err(x0_gpu, x0_cpu) < 1e-3 and rel_err(z_gpu, z_cpu) < 1e-3


def test_guided_plan_on_cuda_is_finite_and_deterministic(tiny_checkpoint):
    planner = load_planner(tiny_checkpoint, device="cuda", ddim_steps=4, guidance_scale=1.0)
    plans = [planner.plan(OBS, GOAL, 6, generator=torch.Generator("cuda").manual_seed(3)) for _ in range(2)]
    assert torch.isfinite(plans[0].states).all() and torch.isfinite(plans[0].actions).all()
    assert torch.equal(plans[0].states, plans[1].states)
    assert torch.equal(plans[0].states[:, 0].cpu(), OBS)


def test_mpc_on_cuda_in_pointmaze(tiny_checkpoint):
    planner = load_planner(tiny_checkpoint, device="cuda", ddim_steps=3)
    controller = MPCController(planner, horizon=4, replan_every=4)
    actions = drive(controller, 20)
    assert isinstance(actions, np.ndarray) and np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
    assert controller.failures == 0


def test_diffuser_on_cuda_holds_the_inpainted_states():
    from test_diffuser import tiny_model, umaze_normalizer

    from dfplan.diffuser.planner import DiffuserPlanner

    planner = DiffuserPlanner(tiny_model(), umaze_normalizer(), device="cuda", seed=0)
    obs, goal = torch.tensor([[-1.0, -1.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    plan = planner.plan(obs, goal)
    assert torch.isfinite(plan.states).all()
    torch.testing.assert_close(plan.states[:, 0].cpu(), obs)
    torch.testing.assert_close(plan.states[:, -1].cpu(), torch.cat([goal, torch.zeros(1, 2)], dim=1))


def test_shipped_diffuser_loads_onto_cuda_and_plans():
    from dfplan.controllers import shipped_checkpoint
    from dfplan.diffuser.planner import load_diffuser

    planner = load_diffuser(shipped_checkpoint("pointmaze-umaze", "diffuser"), device="cuda", seed=0)
    plan = planner.plan(torch.tensor([[1.0, -1.0, 0.0, 0.0]]), torch.tensor([[-1.0, 1.0]]))
    assert torch.isfinite(plan.states).all() and plan.states.shape[1] == planner.horizon
