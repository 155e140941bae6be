"""Scheduling matrices for Diffusion Forcing sampling, as pure functions.

Each returns an integer array `[rows, horizon]`: entry [m, t] is the DDIM step index (0 = clean,
`steps` = pure noise) of token t after row m. Row 0 is all `steps`, the last row all 0, and no entry
ever gets noisier from one row to the next. The sampler walks the rows top to bottom.
"""

from __future__ import annotations

import numpy as np


def _check(horizon: int, steps: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 token, got {horizon}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def pyramid(horizon: int, steps: int, uncertainty: float = 1.0) -> np.ndarray:
    """Causal uncertainty: token t lags `uncertainty * t` rows behind token 0, so the far future stays noisier."""
    _check(horizon, steps)
    if uncertainty < 0:
        raise ValueError(f"uncertainty must be >= 0, got {uncertainty}")
    lag = np.floor(np.arange(horizon) * uncertainty).astype(int)
    rows = steps + int(lag[-1]) + 1
    m = np.arange(rows)[:, None]
    return np.clip(steps + lag[None] - m, 0, steps)


def full_sequence(horizon: int, steps: int) -> np.ndarray:
    """Every token denoised together (a plain sequence diffusion model's schedule)."""
    return pyramid(horizon, steps, uncertainty=0.0)


def autoregressive(horizon: int, steps: int) -> np.ndarray:
    """One token at a time: token t starts only when token t-1 is clean (next-token diffusion)."""
    return pyramid(horizon, steps, uncertainty=float(steps))


def trapezoid(horizon: int, steps: int, uncertainty: float = 1.0) -> np.ndarray:
    """Both ends first, the middle last: the lag grows toward the middle of the horizon."""
    _check(horizon, steps)
    t = np.arange(horizon)
    lag = np.floor(np.minimum(t, horizon - 1 - t) * uncertainty).astype(int)
    rows = steps + int(lag.max()) + 1
    m = np.arange(rows)[:, None]
    return np.clip(steps + lag[None] - m, 0, steps)


def warm_start(matrix: np.ndarray, n_tokens: int, start_step: int) -> np.ndarray:
    """The first `n_tokens` start at DDIM step `start_step` instead of pure noise (they are re-noised from a
    previous plan); the rest of the schedule is unchanged. Rows stay non-increasing."""
    if not 0 <= start_step <= matrix.max(initial=0):
        raise ValueError(f"warm start step must be in 0..{matrix.max(initial=0)}, got {start_step}")
    out = matrix.copy()
    out[:, :n_tokens] = np.minimum(out[:, :n_tokens], start_step)
    return out


SCHEDULES = {"pyramid": pyramid, "full_sequence": full_sequence, "autoregressive": autoregressive,
             "trapezoid": trapezoid}


def scheduling_matrix(name: str, horizon: int, steps: int, uncertainty: float = 1.0) -> np.ndarray:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if name in ("pyramid", "trapezoid"):
        return SCHEDULES[name](horizon, steps, uncertainty)
    return SCHEDULES[name](horizon, steps)
