"""Diffusion Forcing sampling: walk a scheduling matrix row by row with DDIM, optionally guided.

At every row the RNN runs over the tokens that are not yet finished, starting from the cached latent of the
finished prefix (finished tokens never change again, so their latent is computed once). Finished tokens are
fed back as context at a small stabilization noise level, with noise drawn once, so the cache stays valid.
Guidance: the gradient of an objective of the predicted clean tokens w.r.t. the noisy tokens, through the RNN,
shifts the predicted noise (classifier guidance); with `mc_samples` R > 1 the objective is averaged over the
prediction and R-1 re-noised copies of it (Monte Carlo Guidance).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from dfplan.diffusion import ddim_step, eps_from_x0, q_sample, sampling_levels, x0_from_eps
from dfplan.schedules import scheduling_matrix, warm_start
from dfplan.settings import SamplerSettings

TokenObjective = Callable[[torch.Tensor], torch.Tensor]  # normalized clean tokens [B, H, D] -> [B]


@dataclass
class SampleResult:
    tokens: torch.Tensor  # [B, H, D] normalized clean tokens
    z_end: torch.Tensor | None  # latent after the whole plan (finished tokens as context), when asked for
    objective: torch.Tensor | None  # [B] objective of the final plan, if guided


def feed_context(model, tokens: torch.Tensor, z: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
    """Advance the latent over finished tokens [B, T, D], fed at the stabilization level."""
    if tokens.shape[1] == 0:
        return z
    k = torch.full(tokens.shape[:2], level, dtype=torch.long, device=tokens.device)
    x = q_sample(tokens, k, noise, model.schedule) if level > 0 else tokens
    _, z = model.forward_raw(x, k, z)
    return z


def sample(model, z0: torch.Tensor, horizon: int, cfg: SamplerSettings, objective: TokenObjective | None = None,
           generator: torch.Generator | None = None, return_latent: bool = False,
           init: torch.Tensor | None = None) -> SampleResult:
    """Sample `horizon` tokens after latent z0 [B, Hz]; `return_latent` also feeds the plan back for `z_end`
    (one more RNN pass, needed by causal rollouts, not by planning). Warm start: with `cfg.warm_start_step` > 0,
    `init` [B, n, D] (normalized clean tokens, e.g. the unexecuted rest of the previous plan) seeds the first n
    tokens, re-noised to that step, instead of pure noise."""
    B, D, device = z0.shape[0], model.cfg.token_dim, z0.device
    matrix = scheduling_matrix(cfg.schedule, horizon, cfg.ddim_steps, cfg.uncertainty)
    n_init = 0 if init is None or cfg.warm_start_step <= 0 else min(init.shape[1], horizon)
    if n_init:
        matrix = warm_start(matrix, n_init, cfg.warm_start_step)
    step_levels = sampling_levels(model.cfg.num_levels, cfg.ddim_steps).to(device)
    levels = step_levels[torch.as_tensor(matrix, device=device)]  # [rows, H] noise levels
    schedule = model.schedule
    guided = objective is not None and cfg.guidance_scale > 0
    randn = lambda *shape: torch.randn(*shape, device=device, generator=generator)  # noqa: E731
    x = randn(B, horizon, D)
    if n_init:
        k_init = levels[0, :n_init].expand(B, -1)
        x[:, :n_init] = q_sample(init[:, :n_init].to(device), k_init, x[:, :n_init], schedule)
    ctx_noise = randn(B, horizon, D)
    z_prefix, done = z0, 0  # latent after the first `done` tokens, which are finished
    for m in range(len(levels) - 1):
        now, nxt = levels[m], levels[m + 1]
        finished = int((now == 0).long().cumprod(0).sum())
        if finished > done:
            with torch.no_grad():
                z_prefix = feed_context(model, x[:, done:finished], z_prefix, cfg.stabilization_level,
                                        ctx_noise[:, done:finished])
            done = finished
        if bool((now == nxt).all()):
            continue
        x_act, k = x[:, done:], now[done:].expand(B, -1)
        x0, eps = _predict(model, x_act, k, z_prefix, x[:, :done], cfg, objective if guided else None, randn)
        x[:, done:] = ddim_step(x_act, x0, k, nxt[done:].expand(B, -1), schedule, cfg.eta,
                                noise=randn(*x_act.shape) if cfg.eta > 0 else None, eps_hat=eps).detach()
    with torch.no_grad():
        z_end = None
        if return_latent:
            z_end = feed_context(model, x[:, done:], z_prefix, cfg.stabilization_level, ctx_noise[:, done:])
        value = objective(x) if objective is not None else None
    return SampleResult(tokens=x, z_end=z_end, objective=value)


@contextmanager
def _train_mode(model):
    """cuDNN only differentiates an RNN in training mode; the DF model has no dropout or batch statistics, so
    its outputs are the same in both modes."""
    was_training = model.training
    model.train(True)
    try:
        yield
    finally:
        model.train(was_training)


def _predict(model, x_act, k, z_prefix, prefix, cfg: SamplerSettings, objective, randn):
    """(x0, eps) for the active tokens; guided by the objective's gradient when one is given."""
    schedule = model.schedule
    if objective is None:
        with torch.no_grad():
            x0, _ = model.forward_seq(x_act, k, z_prefix)
            x0 = x0.clamp(-cfg.clip_x0, cfg.clip_x0)
        return x0, eps_from_x0(x_act, k, x0, schedule)
    with torch.enable_grad(), _train_mode(model):
        x_in = x_act.detach().requires_grad_(True)
        x0, _ = model.forward_seq(x_in, k, z_prefix)
        x0 = x0.clamp(-cfg.clip_x0, cfg.clip_x0)
        values = [objective(torch.cat([prefix, x0], dim=1))]
        if cfg.mc_samples > 1:  # Monte Carlo Guidance: re-noise the prediction to the current levels, predict again
            R = cfg.mc_samples - 1
            rep = lambda t: t.repeat(R, *([1] * (t.dim() - 1)))  # noqa: E731
            x_re = q_sample(rep(x0), rep(k), randn(R * x0.shape[0], *x0.shape[1:]), schedule)
            x0_re, _ = model.forward_seq(x_re, rep(k), rep(z_prefix))
            x0_re = x0_re.clamp(-cfg.clip_x0, cfg.clip_x0)
            values += [objective(torch.cat([prefix, x0_r], dim=1)) for x0_r in x0_re.chunk(R)]
        mean_value = torch.stack(values).mean(0)
        grad = torch.autograd.grad(mean_value.sum(), x_in)[0]
    x0 = x0.detach()
    eps = eps_from_x0(x_act, k, x0, schedule)
    ab = schedule.alphas_bar[k].unsqueeze(-1)
    eps = eps - cfg.guidance_scale * (1 - ab).sqrt() * grad  # classifier guidance: eps - sqrt(1-ab) * grad J
    x0 = x0_from_eps(x_act, k, eps, schedule).clamp(-cfg.clip_x0, cfg.clip_x0)
    return x0, eps
