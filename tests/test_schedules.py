import numpy as np
import pytest
import torch

from dfplan.diffusion import ddim_step, make_noise_schedule, q_sample, sampling_levels, target_for, to_x0
from dfplan.schedules import SCHEDULES, autoregressive, full_sequence, pyramid, scheduling_matrix, trapezoid, warm_start


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("horizon", [1, 5, 16])
def test_scheduling_matrix_properties(name, horizon):
    steps = 7
    m = scheduling_matrix(name, horizon, steps)
    assert m.shape[1] == horizon and m.dtype.kind == "i"
    assert (m[0] == steps).all(), "first row: all pure noise"
    assert (m[-1] == 0).all(), "last row: all clean"
    assert (np.diff(m, axis=0) <= 0).all(), "never noisier than the row before"
    assert (m >= 0).all() and (m <= steps).all()
    assert (np.diff(m, axis=0) != 0).any(axis=1).all(), "every row makes progress"


def test_pyramid_is_causal_with_lag():
    m = pyramid(6, 4, uncertainty=1.0)
    assert (np.diff(m, axis=1) >= 0).all(), "later tokens never less noisy than earlier ones"
    assert m.shape[0] == 4 + 5 + 1
    assert m[1].tolist() == [3, 4, 4, 4, 4, 4]
    assert (pyramid(6, 4, uncertainty=2.0).shape[0]) > m.shape[0]


def test_full_sequence_and_autoregressive_extremes():
    assert (full_sequence(5, 3) == np.array([[3] * 5, [2] * 5, [1] * 5, [0] * 5])).all()
    ar = autoregressive(3, 2)
    # token t starts denoising only once token t-1 is clean
    for t in range(1, 3):
        started = np.argmax(ar[:, t] < 2)
        assert ar[started - 1, t - 1] == 0


def test_trapezoid_finishes_the_ends_first():
    m = trapezoid(7, 3)
    first_clean = (m == 0).argmax(axis=0)
    assert first_clean[0] == first_clean[-1] < first_clean[3]


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="horizon"):
        pyramid(0, 5)
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduling_matrix("zigzag", 4, 4)


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
def test_noise_schedules_are_monotone(kind):
    ab = make_noise_schedule(kind, 100).alphas_bar
    assert ab[0] == 1 and (ab.diff() < 0).all() and ab[-1] < 0.05


@pytest.mark.parametrize("objective", ["x0", "eps", "v"])
def test_parameterizations_invert(objective):
    sched = make_noise_schedule("linear", 100)
    x0, noise = torch.randn(3, 5, 6), torch.randn(3, 5, 6)
    k = torch.randint(1, 101, (3, 5))
    x_k = q_sample(x0, k, noise, sched)
    target = target_for(objective, x0, noise, k, sched)
    assert torch.allclose(to_x0(objective, target, x_k, k, sched), x0, atol=1e-3)


def test_ddim_step_to_clean_returns_x0_and_keeps_unchanged_levels():
    sched = make_noise_schedule("linear", 100)
    x_k, x0 = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    k = torch.tensor([[50, 50, 80]] * 2)
    k_next = torch.tensor([[0, 20, 80]] * 2)
    out = ddim_step(x_k, x0, k, k_next, sched)
    assert torch.allclose(out[:, 0], x0[:, 0], atol=1e-5)
    assert torch.equal(out[:, 2], x_k[:, 2])
    assert sampling_levels(100, 4).tolist() == [0, 25, 50, 75, 100]


def test_warm_start_caps_the_first_tokens_and_keeps_the_rest():
    base = pyramid(6, 4)
    m = warm_start(base, 3, 2)
    assert (m[:, :3] <= 2).all() and np.array_equal(m[:, 3:], base[:, 3:])
    assert (np.diff(m, axis=0) <= 0).all() and (m[-1] == 0).all()
    assert np.array_equal(warm_start(base, 3, 4), base)
    with pytest.raises(ValueError, match="warm start step"):
        warm_start(base, 3, 5)
