"The forward posterior q(y_{t-1} | y_t, y_0) (sr3lit.posterior) against independent computations; shapes and bad input."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sr3lit.forward import q_sample
from sr3lit.posterior import (posterior_coefficients, posterior_log_variance_clipped, posterior_mean_from_noise,
                              posterior_mean_variance, predict_y0_from_noise)
from sr3lit.schedules import BETA_SCHEDULES, NoiseSchedule, make_beta_schedule

schedules = st.sampled_from(BETA_SCHEDULES)


def product_of_gaussians(betas: np.ndarray, t: int, y0: float, yt: float):
    """Mean and variance of q(y_{t-1}|y_t, y_0), t >= 2, as a product of two Gaussians in y_{t-1}, in precision form:
    q(y_t|y_{t-1}) = N(y_{t-1}; y_t/sqrt(a), b/a) up to a constant, times q(y_{t-1}|y_0) = N(sqrt(g') y0, 1-g')."""
    a, b = 1 - betas[t - 1], betas[t - 1]
    g_prev = float(np.prod(1 - betas[:t - 1]))
    precision_lik, precision_prior = a / b, 1 / (1 - g_prev)
    precision = precision_lik + precision_prior
    mean = (precision_lik * yt / math.sqrt(a) + precision_prior * math.sqrt(g_prev) * y0) / precision if a > 0 else \
        math.sqrt(g_prev) * y0                                 # a = 0 (beta_t = 1): y_t carries no information
    return mean, 1 / precision


@settings(max_examples=60, deadline=None)
@given(schedules, st.integers(2, 2000), st.data())
def test_posterior_variance_lies_between_0_and_beta(name, T, data):
    sched = NoiseSchedule(make_beta_schedule(name, T))
    _, _, var = posterior_coefficients(sched, torch.arange(1, T + 1))
    betas = torch.from_numpy(sched.betas)
    assert var[0] == 0 and (var[1:] > 0).all() and (var <= betas).all()
    t = data.draw(st.integers(1, T))
    _, v = posterior_mean_variance(sched, torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), t)
    assert v.shape == (1, 1, 1, 1) and 0 <= v.item() <= sched.betas[t - 1] * (1 + 1e-6)


@settings(max_examples=100, deadline=None)
@given(schedules, st.integers(2, 2000), st.data(), st.floats(-1, 1), st.floats(-3, 3))
def test_posterior_matches_an_independent_product_of_gaussians(name, T, data, y0, noise):
    betas = make_beta_schedule(name, T)
    t = data.draw(st.integers(2, T))
    g_t = float(np.prod(1 - betas[:t]))
    yt = math.sqrt(g_t) * y0 + math.sqrt(1 - g_t) * noise
    mean, var = posterior_mean_variance(NoiseSchedule(betas), torch.tensor([y0], dtype=torch.float64),
                                        torch.tensor([yt], dtype=torch.float64), t)
    exp_mean, exp_var = product_of_gaussians(betas, t, y0, yt)
    assert mean.item() == pytest.approx(exp_mean, rel=1e-8, abs=1e-8 * math.sqrt(exp_var) + 1e-13)
    assert var.item() == pytest.approx(exp_var, rel=1e-8)


def test_posterior_at_t1_is_the_point_mass_at_y0():
    sched = NoiseSchedule.make('linear', 2000)
    y0, y1 = torch.randn(3, 3, 4, 4, dtype=torch.float64), torch.randn(3, 3, 4, 4, dtype=torch.float64)
    mean, var = posterior_mean_variance(sched, y0, y1, 1)
    torch.testing.assert_close(mean, y0)
    assert (var == 0).all()


def test_posterior_by_monte_carlo_regression():
    # y_{t-1} ~ q(.|y0), y_t ~ q(.|y_{t-1}): least squares of y_{t-1} on y_t recovers E[y_{t-1}|y_t, y0] and its variance
    sched, t, y0, n = NoiseSchedule.make('linear', 200, 1e-4, 0.05), 40, 0.6, 200_000
    g = torch.Generator().manual_seed(0)
    g_prev, alpha = float(np.prod(1 - sched.betas[:t - 1])), 1 - sched.betas[t - 1]
    prev = math.sqrt(g_prev) * y0 + math.sqrt(1 - g_prev) * torch.randn(n, generator=g, dtype=torch.float64)
    cur = math.sqrt(alpha) * prev + math.sqrt(1 - alpha) * torch.randn(n, generator=g, dtype=torch.float64)
    slope = torch.cov(torch.stack([cur, prev]))[0, 1] / cur.var()
    intercept = prev.mean() - slope * cur.mean()
    resid = prev - intercept - slope * cur
    # the fitted line evaluated through the formula at a few y_t, within a few standard errors
    probe = torch.tensor([-1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    mean, var = posterior_mean_variance(sched, torch.full_like(probe, y0), probe, t)
    se = math.sqrt(var.item() / n) * (1 + (probe - cur.mean()).abs() / cur.std())
    assert ((intercept + slope * probe - mean).abs() <= 5 * se).all()
    assert abs(resid.var().item() - var.item()) <= 5 * var.item() * math.sqrt(2 / n)


def test_mean_through_the_noise_equals_the_mean_through_y0():
    sched = NoiseSchedule.make('cosine', 1000)
    g = torch.Generator().manual_seed(1)
    y0 = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    z = torch.randn(y0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 300, 999, 1000])
    yt = q_sample(y0, torch.from_numpy(sched.gammas[t.numpy() - 1]), z)
    torch.testing.assert_close(posterior_mean_from_noise(sched, yt, t, z), posterior_mean_variance(sched, y0, yt, t)[0],
                               rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(predict_y0_from_noise(sched, yt, t, z), y0, rtol=1e-6, atol=1e-6)


def test_int_and_tensor_t_agree_and_each_image_uses_its_own_step():
    sched = NoiseSchedule.make('linear', 2000)
    y0, yt = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([5, 1000, 2000])
    mean, var = posterior_mean_variance(sched, y0, yt, t)
    assert mean.dtype == torch.float32 and var.shape == (3, 1, 1, 1)
    for b, tb in enumerate(t.tolist()):
        m_int, v_int = posterior_mean_variance(sched, y0, yt, tb)
        torch.testing.assert_close(mean[b], m_int[b]); torch.testing.assert_close(var[b], v_int[0])
    m_same, _ = posterior_mean_variance(sched, y0, yt, torch.full((3,), 700))
    torch.testing.assert_close(m_same, posterior_mean_variance(sched, y0, yt, 700)[0])


def test_float32_agrees_with_float64():
    sched = NoiseSchedule.make('linear', 2000)
    y0, yt = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([2, 1500])
    m64, v64 = posterior_mean_variance(sched, y0, yt, t)
    m32, v32 = posterior_mean_variance(sched, y0.float(), yt.float(), t)
    torch.testing.assert_close(m32.double(), m64, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v32.double(), v64, rtol=1e-6, atol=0)


def test_out_of_range_and_malformed_t_raise():
    sched = NoiseSchedule.make('linear', 100)
    y = torch.zeros(4, 1, 2, 2)
    z = torch.zeros_like(y)
    for bad in (0, 101, -1, torch.tensor([1, 2, 0, 3]), torch.tensor([1, 2, 101, 3])):
        for fn in (lambda t: posterior_mean_variance(sched, y, y, t), lambda t: posterior_mean_from_noise(sched, y, t, z),
                   lambda t: predict_y0_from_noise(sched, y, t, z), lambda t: posterior_log_variance_clipped(sched, t)):
            with pytest.raises(ValueError, match='1..T=100'): fn(bad)
    with pytest.raises(TypeError): posterior_mean_variance(sched, y, y, 2.0)
    with pytest.raises(TypeError): posterior_mean_variance(sched, y, y, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match='for a batch of 4'): posterior_mean_variance(sched, y, y, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match='shape'): posterior_mean_variance(sched, y, y[:2], 3)
    with pytest.raises(ValueError, match='noise shape'): posterior_mean_from_noise(sched, y, 3, z[:1])


@pytest.mark.parametrize('name', ['linear', 'cosine', 'jsd'])
def test_clipped_log_variance(name):
    sched = NoiseSchedule(make_beta_schedule(name, 50))
    ts = torch.arange(1, 51)
    log_v = posterior_log_variance_clipped(sched, ts)
    _, _, var = posterior_coefficients(sched, ts)
    assert torch.isfinite(log_v).all() and log_v[0] == log_v[1]
    torch.testing.assert_close(log_v[1:], var[1:].log())
    assert posterior_log_variance_clipped(sched, ts[:4], like=torch.zeros(4, 3, 2, 2)).shape == (4, 1, 1, 1)
    one_step = NoiseSchedule([0.3])
    assert posterior_log_variance_clipped(one_step, 1).item() == pytest.approx(math.log(0.3))
