import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, train_config
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from dfplan.checkpoint import CheckpointError, export_for_inference, load_checkpoint, save_checkpoint
from dfplan.data import WindowSampler, load_runs
from dfplan.df.model import DFRNN, DFConfig
from dfplan.df.tokens import from_tokens, to_tokens, token_mask
from dfplan.errors import UserError
from dfplan.registry import build_model, load_planner
from dfplan.tasks import get_task
from dfplan.training import lr_at, snapshot_path, train

TESTS = Path(__file__).parent


def tiny_model(**kw):
    return DFRNN(DFConfig(obs_dim=4, act_dim=2, **{**TINY_MODEL, **kw}))


def test_tokens_round_trip_and_mask():
    obs, act = torch.randn(3, 9, 4), torch.randn(3, 8, 2)
    tokens = to_tokens(obs, act, 4)
    assert tokens.shape == (3, 2, 24)
    a, o = from_tokens(tokens, 4, 2)
    assert torch.equal(a, act) and torch.equal(o, obs[:, 1:])
    step_mask = torch.tensor([[True] * 8, [True] * 5 + [False] * 3, [True] * 3 + [False] * 5])
    assert token_mask(step_mask, 4).tolist() == [[True, True], [True, False], [False, False]]
    with pytest.raises(ValueError, match="frame_stack"):
        to_tokens(obs[:, :8], act[:, :7], 4)


@pytest.mark.parametrize("cell", ["gru", "resmlp_gru"])
@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_step_and_sequence_agree_and_are_causal(prediction, cell):
    torch.manual_seed(0)
    m = tiny_model(prediction=prediction, cell=cell)
    x, k = torch.randn(2, 5, 24), torch.randint(1, 100, (2, 5))
    z0 = m.init_state(torch.randn(2, 4))
    x0_seq, z_seq = m.forward_seq(x, k, z0)
    z = z0
    for t in range(5):
        x0_t, z = m.step(x[:, t], k[:, t], z)
        assert torch.allclose(x0_t, x0_seq[:, t], atol=1e-5)
    assert torch.allclose(z, z_seq, atol=1e-5)
    x2 = x.clone()
    x2[:, 3:] += 1.0  # changing the future never changes the past
    assert torch.allclose(m.forward_seq(x2, k, z0)[0][:, :3], x0_seq[:, :3], atol=1e-6)


def test_loss_ignores_masked_tokens():
    torch.manual_seed(0)
    m = tiny_model()
    obs0, tokens = torch.randn(2, 4), torch.randn(2, 4, 24)
    mask = torch.tensor([[True, True, False, False]] * 2)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    base = m.loss(obs0, tokens, mask, gen())
    tokens2 = tokens.clone()
    tokens2[:, 2:] = 100.0
    assert torch.allclose(m.loss(obs0, tokens2, mask, gen()), base)


def test_action_weight_shifts_the_loss_to_the_actions():
    torch.manual_seed(0)
    plain, weighted = tiny_model(), tiny_model(action_weight=5.0)
    weighted.load_state_dict(plain.state_dict())
    obs0, tokens, mask = torch.randn(2, 4), torch.randn(2, 4, 24), torch.ones(2, 4, dtype=torch.bool)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.isclose(plain.dim_weights.sum(), torch.tensor(1.0)) and plain.dim_weights.unique().numel() == 1
    w = weighted.dim_weights.reshape(4, 6)  # frame_stack 4 x [2 action dims, 4 obs dims]
    assert torch.allclose(w[:, :2], 5 * w[:, 2:3].expand(4, 2))
    wrong_action = tokens.clone()
    wrong_action[..., 0] += 3.0  # the first action dim of the first frame
    gap_plain = plain.loss(obs0, wrong_action, mask, gen()) - plain.loss(obs0, tokens, mask, gen())
    gap_weighted = weighted.loss(obs0, wrong_action, mask, gen()) - weighted.loss(obs0, tokens, mask, gen())
    assert gap_weighted > 2 * gap_plain > 0


def test_noise_levels_are_independent_per_token():
    gen = torch.Generator().manual_seed(0)
    k = torch.randint(1, 1001, (4096, 16), generator=gen)  # the sampling used in DFRNN.loss
    corr = np.corrcoef(k[:, 0].numpy(), k[:, 1].numpy())[0, 1]
    assert abs(corr) < 0.05 and (k[:, 0] != k[:, 1]).float().mean() > 0.99
    # and the loss really draws them that way: same seed -> same levels -> same loss
    m = tiny_model()
    b = (torch.randn(8, 4), torch.randn(8, 6, 24), torch.ones(8, 6, dtype=torch.bool))
    assert m.loss(*b, torch.Generator().manual_seed(3)) == m.loss(*b, torch.Generator().manual_seed(3))


@pytest.mark.parametrize("cell", ["gru", "resmlp_gru"])
def test_loss_decreases_on_tiny_dataset(datasets, cell):
    torch.manual_seed(0)
    splits = load_runs("dfplan/pointmaze/umaze-v0", val_fraction=0.0)
    sampler = WindowSampler(splits.train, 32, splits.normalizer)
    m = tiny_model(cell=cell)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    fixed = sampler.sample(64, np.random.default_rng(1))
    before = m.batch_loss(fixed, torch.Generator().manual_seed(0)).item()
    for _ in range(60):
        loss = m.batch_loss(sampler.sample(32, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m.batch_loss(fixed, torch.Generator().manual_seed(0)).item()
    assert after < 0.6 * before


def test_checkpoint_round_trip_gives_same_outputs(tiny_checkpoint):

    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt["step"] == 300 and ckpt["model_type"] == "df_rnn" and "optimizer" in ckpt
    assert ckpt["config"]["train"]["steps"] == 300 and ckpt["ref_scores"][0] < ckpt["ref_scores"][1]
    m = build_model(ckpt["model_type"], **ckpt["model_config"])
    m.load_state_dict(ckpt["ema"])
    p = load_planner(tiny_checkpoint, device="cpu")
    x, k = torch.randn(2, 3, 24), torch.randint(1, 100, (2, 3))
    z = torch.randn(2, 32)
    assert torch.allclose(m.forward_seq(x, k, z)[0], p.model.forward_seq(x, k, z)[0], atol=1e-6)


def test_inference_export_drops_the_optimizer_and_half_keeps_the_outputs(tiny_checkpoint, tmp_path):

    full, half = (export_for_inference(tiny_checkpoint, tmp_path / f"{n}.pt", half=n == "half")
                  for n in ("full", "half"))
    assert "optimizer" not in load_checkpoint(full) and half.stat().st_size < 0.6 * full.stat().st_size
    assert load_checkpoint(half)["ema"]["gru.weight_hh_l0"].dtype == torch.float16
    p_full, p_half = load_planner(full, device="cpu"), load_planner(half, device="cpu")
    assert p_half.model.gru.weight_hh_l0.dtype == torch.float32
    x, k, z = torch.randn(2, 3, 24), torch.randint(1, 100, (2, 3)), torch.randn(2, 32)
    assert torch.allclose(p_full.model.forward_seq(x, k, z)[0], p_half.model.forward_seq(x, k, z)[0], atol=1e-2)


def test_resume_continues_at_the_saved_step(datasets, tmp_path):
    cfg = train_config(tmp_path, steps=60)
    train(cfg)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 60
    cfg.train.steps = 90
    with pytest.raises(ValueError, match="resume=true"):
        train(cfg)
    cfg.resume = True
    train(cfg)
    assert load_checkpoint(tmp_path / "final.pt")["step"] == 90
    steps = [int(line.split(",")[0]) for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert max(steps) == 90


def test_lr_schedules_warm_up_then_decay_or_hold():

    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1) and lr_at(9, 1.0, 10, 100, schedule="constant") == 1.0
    assert lr_at(100, 1.0, 10, 100) == pytest.approx(0.1) and lr_at(55, 1.0, 10, 100) == pytest.approx(0.55)
    assert lr_at(100, 1.0, 10, 100, schedule="constant") == lr_at(10**6, 1.0, 10, 100, schedule="constant") == 1.0


def test_snapshots_hold_the_ema_weights_and_survive_a_resume(datasets, tmp_path):

    cfg = train_config(tmp_path, steps=40, snapshot_every=20, lr_schedule="constant")
    train(cfg)
    cfg.train.steps, cfg.resume = 60, True
    train(cfg)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [f"step-{s:07d}.pt" for s in (20, 40, 60)]
    snap, final = load_checkpoint(snapshot_path(tmp_path, 60)), load_checkpoint(tmp_path / "final.pt")
    assert "optimizer" not in snap and snap["step"] == 60
    assert all(torch.equal(snap["model"][k], final["ema"][k]) for k in final["ema"])
    assert not all(torch.equal(snap["model"][k], final["model"][k]) for k in final["model"])  # EMA, not raw weights
    assert load_planner(snapshot_path(tmp_path, 20), device="cpu").meta["env"] == "pointmaze-umaze"


def test_init_starts_from_a_checkpoints_weights_and_counts_on(tiny_checkpoint, datasets, tmp_path):

    start = load_checkpoint(tiny_checkpoint)
    cfg = train_config(tmp_path, steps=start["step"] + 2, lr=1e-9)
    cfg.init = str(tiny_checkpoint)
    train(cfg)
    final = load_checkpoint(tmp_path / "final.pt")
    assert final["step"] == start["step"] + 2 and final["init"] == str(tiny_checkpoint)
    assert all(torch.allclose(final["ema"][k], start["ema"][k], atol=1e-5) for k in start["ema"])
    assert all(torch.equal(final["normalizer"][k], v) for k, v in start["normalizer"].items() if torch.is_tensor(v))
    for overrides, message in [({"model.hidden": 64}, "model.hidden=32"), ({"resume": True}, "pass one of them"),
                               ({"train.steps": start["step"]}, "set train.steps above it")]:
        bad = train_config(tmp_path / "bad", steps=start["step"] + 2)
        bad.init = str(tiny_checkpoint)
        for key, value in overrides.items():
            OmegaConf.update(bad, key, value)
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            train(bad)


def test_training_curve_measures_each_snapshot_once(datasets, tmp_path):
    """benchmarks/training_curve.py on a real run: one row per snapshot, skipped when re-run, and a figure."""
    cfg = train_config(tmp_path / "run", steps=40, snapshot_every=20)
    train(cfg)
    results, plot = tmp_path / "curve.jsonl", tmp_path / "curve.png"
    command = [sys.executable, str(TESTS.parent / "benchmarks" / "training_curve.py"), f"run={tmp_path / 'run'}",
               "env=pointmaze-umaze", "quick=true", "episodes=1", f"results={results}", f"plot={plot}",
               "baseline=pointmaze-umaze-dwell"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r.get("step", r.get("baseline")) for r in rows][:2] == [20, 40] and "umaze-dwell" in rows[2]["baseline"]
    assert rows[0]["val_loss"] is None and rows[1]["val_loss"] > 0 and plot.stat().st_size > 0
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "seed 0:" not in again.stdout and "| 40 |" in again.stdout
    assert len(results.read_text().splitlines()) == 3 and "(baseline) |" in again.stdout
    copied = tmp_path / "same-settings.pt"  # the rows are keyed on the settings, not on the file they came from
    shutil.copy(TESTS.parent / "dfplan" / "checkpoints" / "pointmaze-umaze-dwell.pt", copied)
    same = subprocess.run([*command, f"like={copied}"], capture_output=True, text=True, timeout=600)
    assert same.returncode == 0 and "seed 0:" not in same.stdout and len(results.read_text().splitlines()) == 3
    empty = subprocess.run([*command[:2], f"run={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "snapshot_every" in empty.stderr and "Traceback" not in empty.stderr


def test_killed_training_resumes_to_the_same_final_step(datasets, tmp_path):
    """A real kill (SIGKILL) mid-run: resume=true finishes at the configured step from the last checkpoint."""

    script = (
        f"import sys; sys.path.insert(0, r'{TESTS}');"
        "from conftest import train_config; from dfplan.training import train;"
        f"train(train_config(r'{tmp_path}', steps=100000, checkpoint_every=10))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 120
    while not (tmp_path / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(tmp_path / "last.pt")["step"]
    assert saved >= 10
    cfg = train_config(tmp_path, steps=saved + 20)
    cfg.resume = True
    train(cfg)
    assert load_checkpoint(tmp_path / "final.pt")["step"] == saved + 20


def test_corrupt_and_unsafe_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "dfplan-checkpoint", "x": Evil()}, unsafe)
    with pytest.raises(CheckpointError, match="safe"):
        load_checkpoint(unsafe)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a dfplan checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "ok.pt", {"step": 1})
    assert load_checkpoint(good)["step"] == 1


def test_paper_cell_couples_latent_and_token_in_one_mlp():
    m = tiny_model(cell="resmlp_gru", mlp_blocks=3)
    assert not hasattr(m, "gru") and isinstance(m.paper_cell.gru, torch.nn.GRUCell)
    first = m.paper_cell.before[0].net[0]
    assert first.in_features == 32 + 24 + 16  # [z, token, level embedding]
    assert len(m.paper_cell.before) == 3  # mlp_blocks - 1 residual blocks + a linear map
    with pytest.raises(ValueError, match="cell"):
        tiny_model(cell="lstm")


def test_paper_preset_trains_and_its_checkpoint_plans_with_the_paper_settings(datasets, tmp_path):


    overrides = [f"out={tmp_path}", "dataset=dfplan/pointmaze/umaze-v0", "+experiment=df_paper", "train.steps=4",
                 "train.batch_size=8", "train.window_steps=40", "train.val_every=4", "train.checkpoint_every=4",
                 "train.progress=false", "model.hidden=16", "model.num_levels=100", "planner.ddim_steps=5"]
    with initialize_config_module(config_module="dfplan.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    final = train(cfg, task=get_task("pointmaze-umaze"))
    ckpt = load_checkpoint(final)
    assert ckpt["model_config"]["cell"] == "resmlp_gru" and ckpt["model_config"]["frame_stack"] == 10
    assert ckpt["config"]["train"]["grad_clip"] == 0 and ckpt["config"]["train"]["ema_decay"] == 0.0
    planner = load_planner(final, device="cpu")
    sampler, controller = planner.settings.sampler, planner.settings.controller
    got = (sampler.guidance_rule, sampler.schedule, sampler.ddim_steps, sampler.context_noise)
    assert got == ("paper", "pyramid", 5, False)
    assert (controller.memory, controller.objective, controller.replan_every) == (False, "episode_goal_distance", 10)
    # no EMA: the evaluated weights are the trained ones
    assert all(torch.equal(ckpt["ema"][k], v) for k, v in ckpt["model"].items())
    plan = planner.plan(torch.zeros(2, 4), torch.ones(2, 2), horizon=3)
    assert plan.actions.shape == (2, 30, 2) and torch.isfinite(plan.states).all()


@pytest.mark.parametrize("env", ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"])
def test_shipped_paper_variant_holds_the_paper_configuration(env):
    """variant=paper on every maze: the paper's cell, frame stack and settings, trained on whole episodes by the
    command the task names (which `dfplan-eval variant=paper` prints when the file is missing)."""

    task = get_task(env)
    path = task.shipped_checkpoint("df", "paper")
    planner = load_planner(path, device="cpu")
    assert planner.model.cfg.cell == "resmlp_gru" and planner.frame_stack == 10
    assert planner.settings.sampler.guidance_rule == "paper" and planner.settings.controller.memory is False
    trained = load_checkpoint(path)["config"]
    assert trained["train"]["window_steps"] == task.max_episode_steps
    assert f"train.window_steps={task.max_episode_steps}" in task.train_command("paper")
    assert (planner.model.cfg.mlp_hidden == 32) == ("model.mlp_hidden=32" in task.train_command("paper"))
    plan = planner.plan(torch.zeros(1, 4), torch.ones(1, 2), horizon=2, ddim_steps=5)
    assert torch.isfinite(plan.states).all()


def test_unknown_model_config_key_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown df_rnn config keys.*hiden"):
        build_model("df_rnn", obs_dim=4, act_dim=2, hiden=3)


def test_ddp_with_two_gloo_processes(datasets, tmp_path):
    """torchrun with 2 CPU processes (gloo) trains and writes one checkpoint."""
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "from conftest import train_config\nfrom dfplan.training import train\n"
        "cfg = train_config(%r, steps=20)\ncfg.device = 'cpu'\ntrain(cfg)\n" % (str(TESTS), str(tmp_path / "out"))
    )
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                             str(script)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-6000:]
    assert load_checkpoint(tmp_path / "out" / "final.pt")["step"] == 20
