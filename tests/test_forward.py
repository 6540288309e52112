"The forward process q(y_t | y_{t-1}) and q(y_t | y_0) (sr3lit.forward): statistics, exact identities, shapes, bad input."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sr3lit.forward import forward_process_widget, q_mean_variance, q_sample, q_step, timestep_tensor
from sr3lit.schedules import BETA_SCHEDULES, NoiseSchedule, make_beta_schedule


def assert_moments(samples, mean, var, n_se=5.0):
    "Sample mean/variance along the last dim within n_se standard errors (Gaussian samples) of `mean`, `var`."
    n = samples.shape[-1]
    mean, var = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(var, dtype=torch.float64)
    assert ((samples.mean(-1) - mean).abs() <= n_se * (var / n).sqrt()).all(), (samples.mean(-1), mean)
    assert ((samples.var(-1) - var).abs() <= n_se * var * math.sqrt(2 / (n - 1))).all(), (samples.var(-1), var)


def test_q_sample_has_the_closed_form_mean_and_variance():
    g = torch.Generator().manual_seed(0)
    n = 50_000
    y0 = torch.tensor([-1.0, -0.2, 0.5, 1.0], dtype=torch.float64)
    gamma = torch.tensor([1 - 1e-6, 0.9, 0.5, 0.01], dtype=torch.float64)
    # (B,) gamma broadcast over a trailing sample dimension: (B, n)
    yt = q_sample(y0[:, None].expand(4, n), gamma, torch.randn(4, n, generator=g, dtype=torch.float64))
    assert_moments(yt, [math.sqrt(c) * v for c, v in zip(gamma.tolist(), y0.tolist())], [1 - c for c in gamma.tolist()])


def test_q_sample_draws_its_own_standard_normal_noise():
    torch.manual_seed(0)
    yt = q_sample(torch.full((20_000,), 0.8, dtype=torch.float64), 0.36)
    assert_moments(yt, 0.6 * 0.8, 0.64)


def test_q_sample_wrong_formulas_would_be_detected():
    # the statistical check above is sharp enough to reject 1-gamma in place of sqrt(1-gamma) for the noise scale
    g = torch.Generator().manual_seed(1)
    yt = q_sample(torch.zeros(1, 20_000, dtype=torch.float64), 0.5, torch.randn(1, 20_000, generator=g, dtype=torch.float64))
    with pytest.raises(AssertionError): assert_moments(yt, 0.0, 0.25)


@pytest.mark.parametrize('gamma_form', ['float', '0d', 'B', 'B111'])
def test_q_sample_gamma_forms_broadcast_over_c_h_w(gamma_form):
    y0, noise = torch.rand(3, 2, 4, 5) * 2 - 1, torch.randn(3, 2, 4, 5)
    gam = {'float': 0.3, '0d': torch.tensor(0.3), 'B': torch.full((3,), 0.3), 'B111': torch.full((3, 1, 1, 1), 0.3)}[gamma_form]
    yt = q_sample(y0, gam, noise)
    assert yt.shape == y0.shape and yt.dtype == torch.float32
    torch.testing.assert_close(yt, math.sqrt(0.3) * y0 + math.sqrt(0.7) * noise)


def test_q_sample_uses_each_images_own_gamma():
    y0, noise = torch.rand(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    gammas = [1.0, 0.0, 0.25, 0.81]
    yt = q_sample(y0, torch.tensor(gammas), noise)
    assert torch.equal(yt[0], y0[0]) and torch.equal(yt[1], noise[1])
    for b in (2, 3):
        torch.testing.assert_close(yt[b], math.sqrt(gammas[b]) * y0[b] + math.sqrt(1 - gammas[b]) * noise[b])


def test_q_sample_keeps_precision_near_gamma_one():
    # the report's first step: gamma = 1 - 1e-6. In float32 1 - gamma would be ~1% off; the noise scale must be 1e-3.
    y0, noise = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    gamma = torch.tensor([1 - 1e-6, 1 - 1e-6], dtype=torch.float64)
    torch.testing.assert_close(q_sample(y0, gamma, noise), torch.full_like(y0, 1e-3), rtol=1e-5, atol=0)
    torch.testing.assert_close(q_sample(y0, 1 - 1e-6, noise), torch.full_like(y0, 1e-3), rtol=1e-5, atol=0)


def test_q_sample_rejects_bad_input():
    y0 = torch.zeros(3, 1, 2, 2)
    for bad in (1.5, -0.1, float('nan')):
        with pytest.raises(ValueError, match='gamma must lie in'): q_sample(y0, bad, torch.zeros_like(y0))
    with pytest.raises(ValueError, match='one value per batch element'): q_sample(y0, torch.full((2,), 0.5), torch.zeros_like(y0))
    with pytest.raises(ValueError, match='one value per batch element'): q_sample(y0, torch.full((3, 2), 0.5), torch.zeros_like(y0))
    with pytest.raises(ValueError, match='noise shape'): q_sample(y0, 0.5, torch.zeros(3, 1, 2, 3))
    with pytest.raises(ValueError, match='alpha must lie in'): q_step(y0, 0.0, torch.zeros_like(y0))


def test_q_step_has_the_one_step_mean_and_variance():
    g = torch.Generator().manual_seed(2)
    y_prev = torch.tensor([[-0.5], [1.0]], dtype=torch.float64).expand(2, 50_000)
    alpha = torch.tensor([0.3, 0.95], dtype=torch.float64)
    yt = q_step(y_prev, alpha, torch.randn(2, 50_000, generator=g, dtype=torch.float64))
    assert_moments(yt, [math.sqrt(0.3) * -0.5, math.sqrt(0.95) * 1.0], [0.7, 0.05])


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), st.integers(0, 2**31 - 1))
def test_two_steps_merge_into_one_exactly(a1, a2, seed):
    # eq. 5 with the noise written out: sqrt(a2(1-a1)) z1 + sqrt(1-a2) z2 = sqrt(1 - a1 a2) * (unit-variance noise)
    g = torch.Generator().manual_seed(seed)
    y, z1, z2 = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    merged_noise = (math.sqrt(a2 * (1 - a1)) * z1 + math.sqrt(1 - a2) * z2) / math.sqrt(1 - a1 * a2)
    torch.testing.assert_close(q_step(q_step(y, a1, z1), a2, z2), q_sample(y, a1 * a2, merged_noise))


def test_iterating_q_step_matches_the_closed_form():
    betas = np.linspace(1e-4, 0.05, 100)
    g = torch.Generator().manual_seed(3)
    y = torch.full((1, 20_000), 0.7, dtype=torch.float64)
    for t in range(1, 101):
        y = q_step(y, 1 - betas[t - 1], torch.randn(y.shape, generator=g, dtype=torch.float64))
        if t in (1, 30, 100):
            gamma_t = math.prod(1 - b for b in betas[:t])        # computed here, not taken from NoiseSchedule
            assert_moments(y, math.sqrt(gamma_t) * 0.7, 1 - gamma_t)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(BETA_SCHEDULES), st.integers(1, 500), st.data())
def test_q_mean_variance_follows_the_one_step_recursion(name, T, data):
    # mean and variance of the chain: m_t = sqrt(alpha_t) m_{t-1}, v_t = alpha_t v_{t-1} + beta_t, from (y0, 0)
    betas = make_beta_schedule(name, T)
    sched = NoiseSchedule(betas)
    t = data.draw(st.integers(1, T))
    m, v = 1.0, 0.0
    for b in betas[:t]: m, v = math.sqrt(1 - b) * m, (1 - b) * v + b
    y0 = torch.tensor([-0.3, 1.0], dtype=torch.float64)
    mean, var = q_mean_variance(sched, y0, t)
    torch.testing.assert_close(mean, m * y0, rtol=1e-9, atol=1e-12)
    assert var.shape == (1,) and var.item() == pytest.approx(v, rel=1e-9, abs=1e-12)


def test_timestep_tensor_accepts_ints_and_integer_tensors_in_range():
    sched = NoiseSchedule.make('linear', 10)
    assert timestep_tensor(sched, 3).tolist() == [3]
    assert timestep_tensor(sched, np.int64(10)).tolist() == [10]
    assert timestep_tensor(sched, torch.tensor([1, 10, 5]), batch_size=3).tolist() == [1, 10, 5]
    assert timestep_tensor(sched, torch.tensor(4)).tolist() == [4]
    for bad in (0, 11, torch.tensor([1, 0]), torch.tensor([5, 11])):
        with pytest.raises(ValueError, match='1..T=10'): timestep_tensor(sched, bad)
    for bad in (2.0, torch.tensor([1.0, 2.0]), True, '3', None):
        with pytest.raises(TypeError): timestep_tensor(sched, bad)
    with pytest.raises(ValueError, match='for a batch of 4'): timestep_tensor(sched, torch.tensor([1, 2]), batch_size=4)
    with pytest.raises(ValueError, match='shape'): timestep_tensor(sched, torch.ones(2, 2, dtype=torch.long))


def test_widget_slider_shows_q_sample_of_the_chosen_step():
    sched = NoiseSchedule.make('linear', 2000)
    image = torch.rand(3, 16, 16) * 2 - 1
    box = forward_process_widget(image, sched, seed=7, t=0)
    torch.testing.assert_close(box.yt[0], image)                      # t = 0: the clean image
    first_png = box.children[-1].value
    noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    for t in (1, 700, 2000):
        box.slider.value = t                                          # what a user's drag does
        gamma = math.prod(1 - b for b in np.linspace(1e-6, 1e-2, 2000)[:t])
        assert box.t == t and box.gamma == pytest.approx(gamma, rel=1e-9)
        torch.testing.assert_close(box.yt[0], math.sqrt(gamma) * image + math.sqrt(1 - gamma) * noise[0])
        assert f'{math.sqrt(gamma):.4f}' in box.children[1].value
    assert box.children[-1].value != first_png and bytes(box.children[-1].value).startswith(b'\x89PNG')
    with pytest.raises(ValueError, match='0..T=2000'): forward_process_widget(image, sched, t=2001)
    with pytest.raises(ValueError, match='image must be'): forward_process_widget(torch.zeros(2, 3, 8, 8), sched)
