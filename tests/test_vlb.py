"Properties of the variational lower bound and its terms (sr3lit.vlb)."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.distributions import Normal, kl_divergence

from sr3lit.forward import q_sample
from sr3lit.posterior import posterior_mean_from_noise, posterior_mean_variance
from sr3lit.schedules import NoiseSchedule
from sr3lit.vlb import (VARIANCES, discretized_gaussian_log_likelihood, normal_kl, prior_kl, reverse_variance,
                        vlb_bits_per_dim, vlb_terms, vlb_weight)

LN2 = math.log(2.0)
finite = dict(allow_nan=False, allow_infinity=False)


def f64(x): return torch.tensor(x, dtype=torch.float64)


@given(st.floats(-10, 10, **finite), st.floats(-8, 8, **finite), st.floats(-10, 10, **finite), st.floats(-8, 8, **finite))
def test_normal_kl_matches_torch_distributions(m1, lv1, m2, lv2):
    ours = normal_kl(f64(m1), f64(lv1), f64(m2), f64(lv2))
    ref = kl_divergence(Normal(f64(m1), f64(math.exp(0.5 * lv1))), Normal(f64(m2), f64(math.exp(0.5 * lv2))))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-9, abs=1e-12)
    assert ours.item() >= -1e-12


def test_normal_kl_floats_broadcasting_and_zero_at_equality():
    assert normal_kl(0.2, -1.0, 0.2, -1.0).item() == 0.0
    assert normal_kl(0.0, 0.0, 1.0, 0.0).item() == pytest.approx(0.5)          # (mu1-mu2)^2 / 2 for unit variances
    assert normal_kl(torch.zeros(5, 1), 0.0, torch.zeros(3), 0.0).shape == (5, 3)
    x32 = torch.zeros(2, dtype=torch.float32)
    assert normal_kl(x32, 0.0, 1.0, 0.0).dtype == torch.float32


def test_normal_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    m1, s1, m2, s2 = 0.3, 0.5, -0.4, 1.3
    z = m1 + s1 * torch.randn(400_000, dtype=torch.float64, generator=g)
    log_ratio = Normal(f64(m1), f64(s1)).log_prob(z) - Normal(f64(m2), f64(s2)).log_prob(z)
    se = log_ratio.std().item() / math.sqrt(len(z))
    assert abs(log_ratio.mean().item() - normal_kl(m1, 2 * math.log(s1), m2, 2 * math.log(s2)).item()) < 5 * se


LEVELS = torch.linspace(-1, 1, 256, dtype=torch.float64)


@given(st.floats(-3, 3, **finite), st.floats(-9, 2.5, **finite))
@settings(max_examples=80)
def test_decoder_bins_sum_to_one(mean, log_scale):
    p = discretized_gaussian_log_likelihood(LEVELS, mean, log_scale).exp()
    assert (p >= 0).all()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize('mean,scale', [(0.0, 0.02), (0.73, 0.004), (-1.2, 0.3), (0.999, 0.001)])
def test_decoder_bin_probabilities_are_normal_cdf_differences(mean, scale):
    N = Normal(f64(mean), f64(scale))
    edges = torch.cat([f64([-math.inf]), (LEVELS[:-1] + LEVELS[1:]) / 2, f64([math.inf])])   # midpoints between levels
    expected = N.cdf(edges[1:]) - N.cdf(edges[:-1])
    ours = discretized_gaussian_log_likelihood(LEVELS, mean, math.log(scale)).exp()
    assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-14)


def test_decoder_snaps_to_levels_and_rejects_out_of_range():
    y = LEVELS[100]
    assert discretized_gaussian_log_likelihood(y + 1e-7, 0.1, -3.0) == discretized_gaussian_log_likelihood(y, 0.1, -3.0)
    with pytest.raises(ValueError, match=r'\[-1, 1\]'): discretized_gaussian_log_likelihood(f64([1.01]), 0.0, 0.0)
    with pytest.raises(ValueError, match='n_bins'): discretized_gaussian_log_likelihood(f64([0.0]), 0.0, 0.0, n_bins=1)


def test_decoder_tail_keeps_precision():
    # bin [0, 2/255] under N(0.9, 0.01^2): Phi(-z) at z ~ 89, far below float64's smallest number
    y = f64(-1 + 2 * 128 / 255)
    z = (0.9 - 2 / 255) / 0.01
    mills = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi) - math.log(z) + math.log1p(-1 / z ** 2 + 3 / z ** 4)
    assert discretized_gaussian_log_likelihood(y, 0.9, math.log(0.01)).item() == pytest.approx(mills, rel=1e-9)


def test_prior_kl_against_torch_distributions_and_the_report_schedules():
    report = NoiseSchedule.make('linear', 2000, 1e-6, 1e-2)
    y0 = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 2 - 1
    for s in (report, report.rediscretize(50)):
        gT = s.gammas[-1]
        ref = kl_divergence(Normal(math.sqrt(gT) * y0, math.sqrt(1 - gT)), Normal(0.0, 1.0))
        assert torch.allclose(prior_kl(s, y0), ref, rtol=1e-10, atol=1e-15)
    ones = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    assert prior_kl(report, ones).item() < 3e-5                                   # negligible at T = 2000
    assert prior_kl(report.rediscretize(50), ones).item() / LN2 > 1.0              # > 1 bit/dim with 50 steps


def _beta_tilde(s, t):   # eq. 10, written out from the schedule arrays
    return s.betas[t - 1] * (1 - s.gammas_prev[t - 1]) / (1 - s.gammas[t - 1])


@given(st.integers(0, 10_000), st.integers(2, 300), st.sampled_from(VARIANCES))
@settings(max_examples=40, deadline=None)
def test_kl_term_equals_weighted_noise_error_for_any_predictor(seed, t, variance):
    s = NoiseSchedule.make('linear', 300, 1e-4, 2e-2)
    g = torch.Generator().manual_seed(seed)
    y0 = torch.rand(3, 2, 4, 4, dtype=torch.float64, generator=g) * 2 - 1
    eps = torch.randn(y0.shape, dtype=torch.float64, generator=g)
    eps_theta = torch.randn(y0.shape, dtype=torch.float64, generator=g) * 1.5 + 0.2   # arbitrary, unrelated to eps
    tt = torch.full((3,), t)
    yt = q_sample(y0, s.at('gammas', tt), eps)
    mean_q, var_q = posterior_mean_variance(s, y0, yt, tt)
    mean_p = posterior_mean_from_noise(s, yt, tt, eps_theta)
    sigma2 = s.betas[t - 1] if variance == 'beta' else _beta_tilde(s, t)
    kl = normal_kl(mean_q, var_q.log(), mean_p, math.log(sigma2)).sum((1, 2, 3))
    bt = _beta_tilde(s, t)
    C = 0.5 * (math.log(sigma2 / bt) + bt / sigma2 - 1) * y0[0].numel()
    K = s.betas[t - 1] ** 2 / (2 * sigma2 * s.alphas[t - 1] * (1 - s.gammas[t - 1]))
    expected = K * ((eps - eps_theta) ** 2).sum((1, 2, 3))
    assert torch.allclose(kl - C, expected, rtol=1e-8, atol=1e-10)
    assert torch.allclose(vlb_weight(s, tt, variance), torch.full((3,), K, dtype=torch.float64), rtol=1e-12)
    # the report's weight, with ||Sigma||_2^2 = sigma^4 in the denominator, does not satisfy the identity
    assert not torch.allclose(kl - C, expected / sigma2, rtol=1e-3)


def test_reverse_variance_choices():
    s = NoiseSchedule.make('linear', 20, 1e-3, 0.1)
    assert torch.allclose(reverse_variance(s, torch.arange(1, 21), 'beta'), torch.from_numpy(s.betas))
    assert reverse_variance(s, 5).item() == pytest.approx(_beta_tilde(s, 5), rel=1e-12)
    assert reverse_variance(s, 1).item() == pytest.approx(_beta_tilde(s, 2), rel=1e-12)   # beta tilde_1 = 0 replaced
    with pytest.raises(ValueError, match='variance'): reverse_variance(s, 3, 'learned')


def _single_image():
    y = torch.linspace(-1, 1, 48, dtype=torch.float64).reshape(1, 3, 4, 4)
    y = torch.round((y + 1) * 127.5) / 127.5 - 1                                  # on the 256-level grid, incl. +-1
    return y.expand(2, -1, -1, -1).clone()


def _optimal(y_star):
    "The exact noise predictor for data that is the single image y_star."
    return lambda x, yt, nl: (yt - nl.reshape(-1, 1, 1, 1) * y_star) / (1 - nl.reshape(-1, 1, 1, 1) ** 2).sqrt()


def _independent_L0_bits(y, sigma):
    N, w = Normal(f64(0.0), f64(sigma)), f64(1 / 255)
    inner, edge = N.cdf(w) - N.cdf(-w), N.cdf(w)
    return -torch.where(y.abs() == 1, edge.log(), inner.log()).mean((1, 2, 3)) / LN2


def test_vlb_of_the_optimal_predictor_is_prior_plus_decoder():
    s = NoiseSchedule.make('linear', 60, 1e-4, 5e-2)
    y_star = _single_image()
    vt = vlb_terms(_optimal(y_star), s, y_star, generator=torch.Generator().manual_seed(0))
    assert vt.terms.shape == (2, 60) and vt.prior.shape == (2,) and vt.total.dtype == torch.float64
    assert vt.terms[:, 1:].abs().max() < 1e-10                                    # every L_{t-1} vanishes
    gT = s.gammas[-1]
    L_T = kl_divergence(Normal(math.sqrt(gT) * y_star, math.sqrt(1 - gT)), Normal(0.0, 1.0)).mean((1, 2, 3)) / LN2
    L_0 = _independent_L0_bits(y_star, math.sqrt(_beta_tilde(s, 2)))
    assert torch.allclose(vt.total, L_T + L_0, rtol=1e-9, atol=1e-12)
    assert torch.allclose(vlb_bits_per_dim(_optimal(y_star), s, y_star), L_T + L_0, rtol=1e-9, atol=1e-12)
    # sigma^2 = beta: each L_{t-1} is the constant C_t, and the decoder uses beta_1
    vb = vlb_terms(_optimal(y_star), s, y_star, variance='beta')
    t = np.arange(2, 61)
    bt = _beta_tilde(s, t)
    C_bits = 0.5 * (np.log(s.betas[t - 1] / bt) + bt / s.betas[t - 1] - 1) / LN2
    assert torch.allclose(vb.terms[:, 1:], torch.from_numpy(C_bits).expand(2, -1), rtol=1e-8, atol=1e-12)
    assert torch.allclose(vb.terms[:, 0], _independent_L0_bits(y_star, math.sqrt(s.betas[0])), rtol=1e-9)
    # clipping the implied y0 changes nothing when it is already in [-1, 1]
    vc = vlb_terms(_optimal(y_star), s, y_star, clip_denoised=True)
    assert torch.allclose(vc.total, vt.total, rtol=1e-9)


def test_vlb_of_the_zero_predictor_is_the_weighted_noise_energy():
    s = NoiseSchedule.make('linear', 40, 1e-4, 5e-2)
    y_star = _single_image()
    noise = torch.randn(40, *y_star.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    vz = vlb_terms(lambda x, yt, nl: torch.zeros_like(yt), s, y_star, noise=noise)
    t = np.arange(2, 41)
    K = s.betas[t - 1] ** 2 / (2 * _beta_tilde(s, t) * s.alphas[t - 1] * (1 - s.gammas[t - 1]))
    expected = torch.from_numpy(K)[None] * (noise[1:] ** 2).sum((2, 3, 4)).T / (48 * LN2)
    assert torch.allclose(vz.terms[:, 1:], expected, rtol=1e-9)
    assert torch.allclose(vz.total, vz.prior + vz.terms.sum(1))


def test_vlb_decomposition_matches_path_monte_carlo():
    "Eq. 20 (expectation over whole forward paths) equals the sum of closed-form terms, eq. 23-25."
    s = NoiseSchedule.make('linear', 3, 0.1, 0.5)
    N = 100_000
    y0 = torch.full((N, 1, 1, 1), -1 + 2 * 60 / 255, dtype=torch.float64)
    model = lambda x, yt, nl: torch.sin(3 * yt) + 0.5 * nl.reshape(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(2)
    closed = vlb_terms(model, s, y0, generator=g).total * LN2
    ys, log_q = [y0], torch.zeros(N, dtype=torch.float64)
    for t in range(1, 4):
        loc, scale = math.sqrt(s.alphas[t - 1]) * ys[-1], math.sqrt(s.betas[t - 1])
        ys.append(loc + scale * torch.randn(N, 1, 1, 1, dtype=torch.float64, generator=g))
        log_q += Normal(loc, scale).log_prob(ys[-1]).reshape(-1)
    log_p = Normal(0.0, 1.0).log_prob(ys[-1]).reshape(-1)
    for t in (3, 2, 1):
        nl = torch.full((N,), math.sqrt(s.gammas[t - 1]), dtype=torch.float64)
        mean = posterior_mean_from_noise(s, ys[t], t, model(None, ys[t], nl))
        sigma = math.sqrt(_beta_tilde(s, max(t, 2)))
        log_p += (Normal(mean, sigma).log_prob(ys[t - 1]) if t > 1 else
                  discretized_gaussian_log_likelihood(y0, mean, math.log(sigma))).reshape(-1)
    paths = log_q - log_p
    se = math.hypot(paths.std().item(), closed.std().item()) / math.sqrt(N)
    assert abs(paths.mean().item() - closed.mean().item()) < 4 * se


def test_vlb_terms_calls_the_model_in_the_data_dtype():
    s = NoiseSchedule.make('linear', 5, 1e-3, 0.2)
    y0 = torch.zeros(2, 3, 4, 4)                                                   # float32 (not on the grid: snapped)
    x = torch.ones(2, 3, 4, 4)
    seen = []
    def model(xc, yt, nl):
        seen.append((xc, yt.dtype, nl.dtype, nl.shape))
        return torch.zeros_like(yt)
    vt = vlb_terms(model, s, y0, x)
    assert len(seen) == 5 and all(c is x and d == torch.float32 and e == torch.float32 and sh == (2,) for c, d, e, sh in seen)
    assert vt.total.dtype == torch.float64 and torch.isfinite(vt.total).all()


def test_vlb_terms_bad_input():
    s = NoiseSchedule.make('linear', 5, 1e-3, 0.2)
    y0 = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    zero = lambda x, yt, nl: torch.zeros_like(yt)
    with pytest.raises(ValueError, match='variance'): vlb_terms(zero, s, y0, variance='large')
    with pytest.raises(ValueError, match=r'\[-1, 1\]'): vlb_terms(zero, s, y0 + 2)
    with pytest.raises(ValueError, match='noise must have shape'): vlb_terms(zero, s, y0, noise=torch.zeros(4, 1, 1, 2, 2))
    with pytest.raises(ValueError, match='model_fn returned shape'): vlb_terms(lambda x, yt, nl: yt[:, :, :1], s, y0)
