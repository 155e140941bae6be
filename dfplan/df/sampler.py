"""Diffusion Forcing sampling: walk a scheduling matrix row by row with DDIM, optionally guided.

At every row the RNN runs over the tokens that are not yet finished, starting from the cached latent of the
finished prefix (finished tokens never change again, so their latent is computed once). Finished tokens are
fed back as context at a small stabilization noise level, with noise drawn once, so the cache stays valid.
Guidance: the gradient of an objective of the predicted clean tokens w.r.t. the noisy tokens, through the RNN,
shifts the predicted noise (classifier guidance); with `mc_samples` R > 1 the objective is averaged over the
prediction and R-1 re-noised copies of it (Monte Carlo Guidance).
History guidance (Song et al. 2025, for our RNN): given a second latent `z_now` that holds less history (the current
observation alone), every prediction is x0 = x0_now + w * (x0_hist - x0_now), w = `cfg.history_guidance`; both
latents run as one doubled batch, [history rows; current-state rows].

Cost: a small-batch plan is thousands of small ops, so per-op overhead, not arithmetic, sets its time. Hence what a
row needs beyond the tokens is prepared once per call: the row bookkeeping on the host from the scheduling matrix
(no device sync in the loop), alphas_bar for all rows in one gather, the level embedding once per distinct level
(`DFRNN.forward_emb`; the same arithmetic as embedding every token). Nothing records an autograd graph but the
guided prediction. Threads are the caller's choice: on a CPU shared with other work, idle OpenMP threads wait for
cores others hold, so `torch.set_num_threads(1)` is the safe setting there.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import torch

from dfplan.diffusion.core import ddim_step_at, eps_from_x0_at, q_sample_at, sampling_levels, to_x0_at, x0_from_eps_at
from dfplan.schedules import scheduling_matrix, warm_start
from dfplan.settings import SamplerSettings

TokenObjective = Callable[[torch.Tensor], torch.Tensor]  # normalized clean tokens [B, H, D] -> [B]


@dataclass
class SampleResult:
    tokens: torch.Tensor  # [B, H, D] normalized clean tokens
    z_end: torch.Tensor | None  # latent after the whole plan (finished tokens as context), when asked for
    objective: torch.Tensor | None  # [B] objective of the final plan, if guided


def best_candidates(result: SampleResult, n: int) -> SampleResult:
    """Of n candidate plans per row (rows b*n .. b*n+n-1 of a guided `result`), keep the one with the highest
    objective (a non-finite objective never wins)."""
    value = result.objective.reshape(-1, n)
    value = torch.where(torch.isfinite(value), value, -torch.inf)
    rows = value.argmax(1) + torch.arange(value.shape[0], device=value.device) * n
    pick = lambda t: None if t is None else t[rows.to(t.device)]  # noqa: E731
    return SampleResult(tokens=pick(result.tokens), z_end=pick(result.z_end), objective=pick(result.objective))


def feed_context(model, tokens: torch.Tensor, z: torch.Tensor, level: int, noise: torch.Tensor,
                 emb: torch.Tensor | None = None, noised: bool = True) -> torch.Tensor:
    """Advance the latent over finished tokens [B, T, D], fed at the stabilization level (`emb`: its embedding
    [E], when the caller has it); `noised=False` feeds them clean, only labelled with that level (the paper code)."""
    if tokens.shape[1] == 0:
        return z
    x = q_sample_at(tokens, model.alphas_bar[level], noise) if level > 0 and noised else tokens
    if emb is None:
        emb = model.level_emb(torch.full(tokens.shape[:2], level, device=tokens.device))
    _, z = model.forward_emb(x, emb.expand(tokens.shape[1], -1) if emb.dim() == 1 else emb, z)
    return z


class _Row(NamedTuple):
    """What one scheduling row needs for its active tokens (all but the finished prefix), shared by the batch."""

    ab: torch.Tensor  # [T, 1] alphas_bar at the tokens' levels now
    ab_next: torch.Tensor  # [T, 1] ... after this row
    emb: torch.Tensor  # [T, E] level embedding of the levels now
    unchanged: torch.Tensor | None  # [T, 1] True where the level stays; None when every token moves
    finishes_all: bool  # every active token is clean after this row (known on the host: no device sync to ask)


class _Tables(NamedTuple):
    """Row-independent lookups for a scheduling matrix of noise levels [rows, H], built once per `sample`."""

    finished: list[int]  # per row: clean leading tokens (finished for good: levels never rise)
    moves: list[bool]  # per row but the last: does any level change to the next row
    all_move: list[bool]  # ... does every level change
    ab: torch.Tensor  # [rows, H, 1] alphas_bar
    stays: torch.Tensor  # [rows - 1, H, 1] bool: level unchanged to the next row
    index: torch.Tensor  # [rows, H] position of each level in `emb`
    emb: torch.Tensor  # [U, E] embedding of the distinct levels
    context_emb: torch.Tensor  # [E] embedding of the stabilization level


def _tables(model, levels: np.ndarray, context_level: int, device) -> _Tables:
    """The lookups for `levels` [rows, H] (host ints) and the stabilization level `context_level`."""
    step = levels[:-1] != levels[1:]
    distinct = np.unique(np.append(levels, context_level))  # one level-MLP call for the lot
    index = np.searchsorted(distinct, levels)
    emb = model.level_emb(torch.as_tensor(distinct, device=device))
    levels_t = torch.as_tensor(levels, device=device)
    return _Tables(finished=np.cumprod(levels == 0, axis=1).sum(1).tolist(), moves=step.any(1).tolist(),
                   all_move=step.all(1).tolist(), ab=model.alphas_bar[levels_t].unsqueeze(-1),
                   stays=(~torch.as_tensor(step, device=device)).unsqueeze(-1),
                   index=torch.as_tensor(index, device=device), emb=emb,
                   context_emb=emb[int(np.searchsorted(distinct, context_level))])


def _row(t: _Tables, m: int, done: int) -> _Row:
    return _Row(ab=t.ab[m, done:], ab_next=t.ab[m + 1, done:], emb=t.emb[t.index[m, done:]],
                unchanged=None if t.all_move[m] else t.stays[m, done:], finishes_all=t.finished[m + 1] == t.ab.shape[1])


def schedule_levels(model, horizon: int, cfg: SamplerSettings, n_init: int = 0) -> np.ndarray:
    """[rows, horizon] noise levels (host ints) that `sample` walks: the scheduling matrix in the model's levels,
    the first `n_init` tokens starting at `cfg.warm_start_step` (warm start)."""
    matrix = scheduling_matrix(cfg.schedule, horizon, cfg.ddim_steps, cfg.uncertainty)
    if n_init:
        matrix = warm_start(matrix, n_init, cfg.warm_start_step)
    return sampling_levels(model.cfg.num_levels, cfg.ddim_steps).numpy()[matrix]


def denoise(model, z0: torch.Tensor, x: torch.Tensor, levels: np.ndarray, cfg: SamplerSettings,
            objective: TokenObjective | None = None, generator: torch.Generator | None = None,
            z_now: torch.Tensor | None = None, token_box: tuple[torch.Tensor, torch.Tensor] | None = None
            ) -> torch.Tensor:
    """Continue a partly denoised plan: tokens x [B, H, D] (normalized), at the noise levels of the first row of
    `levels` [rows, H] (host ints, non-increasing down the rows), walked through the remaining rows; returns the
    tokens at the levels of the last row (a new tensor). Any sub-sequence of a scheduling matrix's rows is such a
    matrix: a block of consecutive rows (one level of tree search), or every j-th row to the end (jumpy denoising).
    Finished tokens are fed back with fresh stabilization noise. `objective`, `z_now`, `token_box`: as in `sample`."""
    paired = z_now is not None and cfg.history_guidance != 1.0
    if paired:
        z0 = torch.cat([z0, z_now.to(z0.device)])
    guided = objective is not None and cfg.guidance_scale > 0
    device = z0.device
    with torch.no_grad() if guided else torch.inference_mode():
        tables = _tables(model, levels, cfg.stabilization_level, device)
        randn = lambda *shape: torch.randn(*shape, device=device, generator=generator)  # noqa: E731
        pair = (lambda t: torch.cat([t, t])) if paired else (lambda t: t)  # noqa: E731
        ctx_noise = randn(*x.shape)
        box = token_box if cfg.clip_actions else None
        out, _ = _walk(model, z0, x.to(device).clone(), ctx_noise, tables, levels, cfg, objective if guided else None,
                       randn, False, pair, box)
    return out.clone() if not guided else out


def sample(model, z0: torch.Tensor, horizon: int, cfg: SamplerSettings, objective: TokenObjective | None = None,
           generator: torch.Generator | None = None, return_latent: bool = False,
           init: torch.Tensor | None = None, z_now: torch.Tensor | None = None,
           token_box: tuple[torch.Tensor, torch.Tensor] | None = None) -> SampleResult:
    """Sample `horizon` tokens after latent z0 [B, Hz]; `return_latent` also feeds the plan back for `z_end`
    (one more RNN pass, needed by causal rollouts, not by planning). Warm start: with `cfg.warm_start_step` > 0,
    `init` [B, n, D] (normalized clean tokens, e.g. the unexecuted rest of the previous plan) seeds the first n
    tokens, re-noised to that step, instead of pure noise. History guidance: `z_now` [B, Hz], a latent with less
    history than z0 (used when `cfg.history_guidance` != 1). `token_box`: (low, high) [D] in normalized units, used
    when `cfg.clip_actions`: every step's clean estimate is clamped into it (±inf on the state entries)."""
    paired = z_now is not None and cfg.history_guidance != 1.0
    if paired:
        z0 = torch.cat([z0, z_now.to(z0.device)])  # the doubled batch: [history; current state]
    n_init = 0 if init is None or cfg.warm_start_step <= 0 else min(init.shape[1], horizon)
    levels = schedule_levels(model, horizon, cfg, n_init)
    guided = objective is not None and cfg.guidance_scale > 0
    # guided, the prediction turns gradients back on for itself; unguided, inference mode also skips the view tracking
    # and version counting that no_grad keeps, and its tensors (which can never join a graph) are cloned out for the
    # caller
    with torch.no_grad() if guided else torch.inference_mode():
        box = token_box if cfg.clip_actions else None
        tokens, z_end = _sample(model, z0, levels, cfg, objective if guided else None, generator, return_latent,
                                init, n_init, paired, box)
    if not guided:
        tokens, z_end = tokens.clone(), None if z_end is None else z_end.clone()
    with torch.no_grad():  # outside inference mode: an objective may keep tensors it makes for later guided calls
        value = objective(tokens) if objective is not None else None
    return SampleResult(tokens=tokens, z_end=z_end, objective=value)


def _sample(model, z0, levels, cfg, objective, generator, return_latent, init, n_init, paired, box=None):
    """(tokens [B, H, D], z_end or None): the row loop of `sample` (`objective`: None when unguided; `paired`:
    z0 is [2B, Hz], history guidance; `box`: (low, high) [D] that every clean estimate is clamped into, or None)."""
    B = z0.shape[0] // 2 if paired else z0.shape[0]
    pair = (lambda t: torch.cat([t, t])) if paired else (lambda t: t)  # tokens as the latents' batch sees them
    horizon, D, device = levels.shape[1], model.cfg.token_dim, z0.device
    tables = _tables(model, levels, cfg.stabilization_level, device)
    randn = lambda *shape: torch.randn(*shape, device=device, generator=generator)  # noqa: E731
    x = cfg.temperature * randn(B, horizon, D)  # < 1: plans nearer the data's mean behaviour than a sample of it
    if n_init:
        x[:, :n_init] = q_sample_at(init[:, :n_init].to(device), tables.ab[0, :n_init], x[:, :n_init])
    ctx_noise = randn(B, horizon, D)
    return _walk(model, z0, x, ctx_noise, tables, levels, cfg, objective, randn, return_latent, pair, box)


def _walk(model, z0, x, ctx_noise, tables, levels, cfg, objective, randn, return_latent, pair, box):
    """(tokens, z_end or None): walk the rows of `levels` from tokens x at the levels of its first row, in place."""
    B = x.shape[0]
    z_prefix, done = z0, 0  # latent after the first `done` tokens, which are finished
    for m in range(len(levels) - 1):
        if tables.finished[m] > done:
            finished = tables.finished[m]
            z_prefix = feed_context(model, pair(x[:, done:finished]), z_prefix, cfg.stabilization_level,
                                    pair(ctx_noise[:, done:finished]), tables.context_emb, cfg.context_noise)
            done = finished
        if not tables.moves[m]:
            continue
        row, x_act = _row(tables, m, done), x[:, done:]
        x0, eps, shift = _predict(model, x_act, row, z_prefix, x[:, :done], cfg, objective, randn)
        if box is not None:  # the step then heads for actions the env can execute, and the states follow them
            x0 = x0.clamp(*box)
            eps = eps_from_x0_at(x_act, row.ab, x0)
        x[:, done:] = ddim_step_at(x_act, x0, row.ab, row.ab_next, cfg.eta, eps_hat=eps, unchanged=row.unchanged,
                                   noise=randn(*x_act.shape) if cfg.eta > 0 else None)
        if shift is not None:
            x[:, done:] += shift
    z_end = None
    if return_latent:
        z_end = feed_context(model, pair(x[:, done:]), z_prefix, cfg.stabilization_level, pair(ctx_noise[:, done:]),
                             tables.context_emb, cfg.context_noise)[:B]
    return x, z_end


@contextmanager
def _train_mode(model, device: torch.device):
    """cuDNN only differentiates an RNN in training mode; the DF model has no dropout or batch statistics, so
    its outputs are the same in both modes. Elsewhere (CPU) the mode changes nothing and is left alone."""
    if device.type != "cuda":
        yield
        return
    was_training = model.training
    model.train(True)
    try:
        yield
    finally:
        model.train(was_training)


def _x0(model, x, row: _Row, z, cfg: SamplerSettings) -> torch.Tensor:
    """The model's clamped clean-token estimate for noisy tokens x [B, T, D] at the row's levels after latents z:
    [B, Hz], or [2B, Hz] = [history; current state] for history guidance."""
    if z.shape[0] == x.shape[0]:
        out, _ = model.forward_emb(x, row.emb, z)
        return to_x0_at(model.cfg.prediction, out, x, row.ab).clamp(-cfg.clip_x0, cfg.clip_x0)
    xx = torch.cat([x, x])
    out, _ = model.forward_emb(xx, row.emb, z)
    x0_hist, x0_now = to_x0_at(model.cfg.prediction, out, xx, row.ab).chunk(2)
    return (x0_now + cfg.history_guidance * (x0_hist - x0_now)).clamp(-cfg.clip_x0, cfg.clip_x0)


def _tile(z: torch.Tensor, R: int, batch: int) -> torch.Tensor:
    """Latents for R stacked copies of a batch: [B, Hz] -> [R*B, Hz]; paired [2B, Hz] -> [2RB, Hz] as [hist; now]."""
    if z.shape[0] == batch:
        return z.repeat(R, 1)
    hist, now = z.chunk(2)
    return torch.cat([hist.repeat(R, 1), now.repeat(R, 1)])


def paper_guidance_weight(ab: torch.Tensor, ab_next: torch.Tensor, eta: float = 0.0) -> torch.Tensor:
    """The paper code's guidance constant c = (1 - ab) - sqrt(1 - ab_next - sigma^2) * sqrt(1 - ab) of a DDIM step
    from alphas_bar `ab` to `ab_next`: ~1e-5 at high noise, 0 where the level stays and at the last (clean) step."""
    sigma2 = eta**2 * ((1 - ab_next) / (1 - ab).clamp(min=1e-8) * (1 - ab / ab_next)).clamp(min=0)
    c = (1 - ab) - (1 - ab_next - sigma2).clamp(min=0).sqrt() * (1 - ab).sqrt()
    return torch.where(ab_next >= 1, torch.zeros_like(c), c)


@lru_cache(maxsize=8)
def _action_mask(frame_stack: int, act_dim: int, obs_dim: int, device) -> torch.Tensor:
    """[D]: 1 on a token's action entries, 0 on its states (token = frame_stack x [a, o])."""
    frame = torch.cat([torch.ones(act_dim, device=device), torch.zeros(obs_dim, device=device)])
    return frame.repeat(frame_stack)


def _predict(model, x_act, row: _Row, z_prefix, prefix, cfg: SamplerSettings, objective, randn):
    """(x0, eps, shift) for the active tokens; guided by the objective's gradient when one is given: through eps
    (`guidance_rule="eps"`), or as `shift`, added to the next DDIM sample (`"paper"`; None otherwise)."""
    if objective is not None and not cfg.guide_last_step and row.finishes_all:
        objective = None  # nothing left to guide: skip the backward pass
    if objective is None:
        x0 = _x0(model, x_act, row, z_prefix, cfg)
        return x0, eps_from_x0_at(x_act, row.ab, x0), None
    # the objective sees the whole plan: finished prefix + prediction (no copy while nothing is finished)
    whole = lambda x0: x0 if prefix.shape[1] == 0 else torch.cat([prefix, x0], dim=1)  # noqa: E731
    with torch.enable_grad(), _train_mode(model, x_act.device):
        x_in = x_act.detach().requires_grad_(True)
        x0 = _x0(model, x_in, row, z_prefix, cfg)
        values = [objective(whole(x0))]
        if cfg.mc_samples > 1:  # Monte Carlo Guidance: re-noise the prediction to the current levels, predict again
            R = cfg.mc_samples - 1
            rep = lambda t: t.repeat(R, *([1] * (t.dim() - 1)))  # noqa: E731
            x_re = q_sample_at(rep(x0), row.ab, randn(R * x0.shape[0], *x0.shape[1:]))
            x0_re = _x0(model, x_re, row, _tile(z_prefix, R, x0.shape[0]), cfg)
            values += [objective(whole(x0_r)) for x0_r in x0_re.chunk(R)]
        mean_value = values[0] if len(values) == 1 else torch.stack(values).mean(0)
        grad = torch.autograd.grad(mean_value.sum(), x_in)[0]
    if not cfg.guide_last_step:
        grad = torch.where(row.ab_next >= 1, 0.0, grad)  # tokens this step finishes
    if cfg.guided_dims == "actions":
        grad = grad * _action_mask(model.cfg.frame_stack, model.cfg.act_dim, model.cfg.obs_dim, grad.device)
    x0 = x0.detach()
    eps = eps_from_x0_at(x_act, row.ab, x0)
    if cfg.guidance_rule == "paper":
        shift = cfg.guidance_scale * paper_guidance_weight(row.ab, row.ab_next, cfg.eta) * grad
        return x0, eps, shift if row.unchanged is None else torch.where(row.unchanged, 0.0, shift)
    eps = eps - cfg.guidance_scale * (1 - row.ab).sqrt() * grad  # classifier guidance: eps - sqrt(1-ab) * grad J
    x0 = x0_from_eps_at(x_act, row.ab, eps).clamp(-cfg.clip_x0, cfg.clip_x0)
    return x0, eps, None
