"""Diffusion math as pure functions on tensors: noise schedules, forward noising, parameterizations, DDIM."""

from .core import (
    NoiseSchedule,
    ddim_step,
    ddpm_step,
    eps_from_x0,
    make_noise_schedule,
    q_sample,
    sampling_levels,
    target_for,
    to_x0,
    x0_from_eps,
)

__all__ = ["NoiseSchedule", "ddim_step", "ddpm_step", "eps_from_x0", "make_noise_schedule", "q_sample",
           "sampling_levels", "to_x0", "target_for", "x0_from_eps"]
