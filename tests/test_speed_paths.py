"""The fast sampling path (row tables prepared once, level embedding once per distinct level, no graph unless guided)
gives the plans of a straightforward implementation of the same algorithm. No timing here (benchmarks/speed.py)."""

from dataclasses import replace

import pytest
import torch

from dfplan.df.sampler import sample
from dfplan.diffusion import ddim_step, eps_from_x0, q_sample, sampling_levels, x0_from_eps
from dfplan.registry import load_planner
from dfplan.schedules import scheduling_matrix, warm_start
from dfplan.settings import SamplerSettings

OBS = torch.tensor([[0.5, 1.0, 0.0, 0.0], [1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, 0.5, 0.0]])
GOAL = torch.tensor([[-1.0, 1.0]] * 3)


@pytest.fixture(scope="module")
def planner(tiny_checkpoint):
    return load_planner(tiny_checkpoint, device="cpu")


def reference_sample(model, z0, horizon, cfg, objective=None, generator=None, return_latent=False, init=None):
    """The sampler written plainly: per-token levels [B, T] everywhere, every row's quantities recomputed, the
    network called through `forward_seq`. Same random draws, in the same order, as `sample`."""
    B, D = z0.shape[0], model.cfg.token_dim
    matrix = scheduling_matrix(cfg.schedule, horizon, cfg.ddim_steps, cfg.uncertainty)
    n_init = 0 if init is None or cfg.warm_start_step <= 0 else min(init.shape[1], horizon)
    if n_init:
        matrix = warm_start(matrix, n_init, cfg.warm_start_step)
    levels = sampling_levels(model.cfg.num_levels, cfg.ddim_steps)[torch.as_tensor(matrix)]
    sched, guided = model.schedule, objective is not None and cfg.guidance_scale > 0
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731

    def feed(tokens, z, noise):
        if tokens.shape[1] == 0:
            return z
        k = torch.full(tokens.shape[:2], cfg.stabilization_level, dtype=torch.long)
        x = q_sample(tokens, k, noise, sched) if cfg.stabilization_level > 0 else tokens
        return model.forward_raw(x, k, z)[1]

    def predict_x0(x, k, z):
        return model.forward_seq(x, k, z)[0].clamp(-cfg.clip_x0, cfg.clip_x0)

    x = randn(B, horizon, D)
    if n_init:
        x[:, :n_init] = q_sample(init[:, :n_init], levels[0, :n_init].expand(B, -1), x[:, :n_init], sched)
    ctx_noise = randn(B, horizon, D)
    z_prefix, done = z0, 0
    for m in range(len(levels) - 1):
        now, nxt = levels[m], levels[m + 1]
        finished = int((now == 0).long().cumprod(0).sum())
        if finished > done:
            with torch.no_grad():
                z_prefix = feed(x[:, done:finished], z_prefix, ctx_noise[:, done:finished])
            done = finished
        if bool((now == nxt).all()):
            continue
        x_act, k = x[:, done:], now[done:].expand(B, -1)
        if not guided:
            with torch.no_grad():
                x0 = predict_x0(x_act, k, z_prefix)
            eps = eps_from_x0(x_act, k, x0, sched)
        else:
            with torch.enable_grad():
                x_in = x_act.detach().requires_grad_(True)
                x0 = predict_x0(x_in, k, z_prefix)
                values = [objective(torch.cat([x[:, :done], x0], dim=1))]
                if cfg.mc_samples > 1:
                    R = cfg.mc_samples - 1
                    x_re = q_sample(x0.repeat(R, 1, 1), k.repeat(R, 1), randn(R * B, *x0.shape[1:]), sched)
                    x0_re = predict_x0(x_re, k.repeat(R, 1), z_prefix.repeat(R, 1))
                    values += [objective(torch.cat([x[:, :done], c], dim=1)) for c in x0_re.chunk(R)]
                grad = torch.autograd.grad(torch.stack(values).mean(0).sum(), x_in)[0]
            x0 = x0.detach()
            ab = sched.alphas_bar[k].unsqueeze(-1)
            eps = eps_from_x0(x_act, k, x0, sched) - cfg.guidance_scale * (1 - ab).sqrt() * grad
            x0 = x0_from_eps(x_act, k, eps, sched).clamp(-cfg.clip_x0, cfg.clip_x0)
        noise = randn(*x_act.shape) if cfg.eta > 0 else None
        k_next = nxt[done:].expand(B, -1)
        x[:, done:] = ddim_step(x_act, x0, k, k_next, sched, cfg.eta, noise=noise, eps_hat=eps).detach()
    with torch.no_grad():
        z_end = feed(x[:, done:], z_prefix, ctx_noise[:, done:]) if return_latent else None
    return x, z_end


CASES = {
    "full_sequence guided": dict(schedule="full_sequence", ddim_steps=3, guidance_scale=0.5),
    "pyramid guided, stabilized prefix": dict(schedule="pyramid", ddim_steps=4, guidance_scale=1.0),
    "autoregressive unguided": dict(schedule="autoregressive", ddim_steps=3, guidance_scale=0.0),
    "trapezoid guided MCG": dict(schedule="trapezoid", ddim_steps=3, guidance_scale=1.0, mc_samples=3),
    "pyramid eta": dict(schedule="pyramid", ddim_steps=5, guidance_scale=0.5, eta=0.7),
    "clean context": dict(schedule="pyramid", ddim_steps=3, guidance_scale=0.5, stabilization_level=0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sampler_matches_the_plain_reference(planner, case):
    cfg = SamplerSettings(**CASES[case])
    z = planner.initial_latent(OBS)
    objective = planner._token_objective(planner.default_objective()(GOAL), OBS)
    for horizon in (1, 6):
        fast = sample(planner.model, z, horizon, cfg, objective, torch.Generator().manual_seed(7), return_latent=True)
        ref, z_end = reference_sample(planner.model, z, horizon, cfg, objective, torch.Generator().manual_seed(7),
                                      return_latent=True)
        torch.testing.assert_close(fast.tokens, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.z_end, z_end, atol=1e-5, rtol=0)


def test_warm_start_matches_the_plain_reference(planner):
    cfg = SamplerSettings(schedule="pyramid", ddim_steps=4, guidance_scale=0.5, warm_start_step=2)
    z = planner.initial_latent(OBS)
    init = planner.plan(OBS, GOAL, 5, generator=torch.Generator().manual_seed(1)).info["tokens"][:, 1:]
    objective = planner._token_objective(planner.default_objective()(GOAL), OBS)
    fast = sample(planner.model, z, 5, cfg, objective, torch.Generator().manual_seed(3), init=init)
    ref, _ = reference_sample(planner.model, z, 5, cfg, objective, torch.Generator().manual_seed(3), init=init)
    torch.testing.assert_close(fast.tokens, ref, atol=1e-5, rtol=0)


def test_shared_level_embedding_is_the_per_token_one(planner):
    m = planner.model
    x, z = torch.randn(3, 5, m.cfg.token_dim), torch.randn(3, m.cfg.hidden)
    k = torch.tensor([0, 3, 50, 99, 100])
    with torch.no_grad():
        out, z_next = m.forward_raw(x, k.expand(3, -1), z)
        out_shared, z_shared = m.forward_emb(x, m.level_emb(k), z)
    torch.testing.assert_close(out_shared, out, atol=1e-6, rtol=0)
    torch.testing.assert_close(z_shared, z_next, atol=1e-6, rtol=0)


def saves_for_backward(fn) -> bool:
    """Whether `fn` builds an autograd graph: autograd saves tensors for backward only while it records one."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        fn()
    return bool(saved)


def test_no_graph_without_guidance(tiny_checkpoint):
    planner = load_planner(tiny_checkpoint, device="cpu")
    planner.model.requires_grad_(True)  # as fresh from training: only the sampler's own modes keep graphs away
    plan = lambda scale: planner.plan(OBS, GOAL, 4, generator=torch.Generator().manual_seed(0),  # noqa: E731
                                      guidance_scale=scale)
    assert saves_for_backward(lambda: plan(0.5))  # the probe sees the guided prediction's graph
    assert not saves_for_backward(lambda: plan(0.0))
    assert not saves_for_backward(lambda: planner.rollout(OBS, 2, generator=torch.Generator().manual_seed(0)))
    unguided = plan(0.0)
    for t in (unguided.actions, unguided.states, unguided.info["tokens"], unguided.info["objective"]):
        assert t.grad_fn is None and not t.requires_grad and not t.is_inference()


def test_unguided_results_can_seed_a_guided_plan(planner):
    """The unguided path runs in inference mode; what it returns must still work anywhere, e.g. a rollout's latent
    as the start of a guided plan (an inference tensor there could not be saved for backward)."""
    cfg = SamplerSettings(schedule="full_sequence", ddim_steps=2)
    z = planner.initial_latent(OBS)
    rolled = sample(planner.model, z, 2, cfg, generator=torch.Generator().manual_seed(0), return_latent=True)
    assert not rolled.tokens.is_inference() and not rolled.z_end.is_inference()
    plan = planner.plan_from(rolled.z_end, OBS, GOAL, 3, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                             init=rolled.tokens, warm_start_step=1)
    assert torch.isfinite(plan.states).all()


def test_default_objective_builder_is_kept_per_setting(planner):
    """plan() without an objective reuses the task's builder (the geodesic one caches its fields per goal)."""

    first = planner.default_objective()
    assert planner.default_objective() is first
    old = planner.settings
    try:
        planner.settings = replace(old, controller=replace(old.controller, objective="goal_distance"))
        assert planner.default_objective() is not first
    finally:
        planner.settings = old
