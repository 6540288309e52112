"Properties of the samplers (sr3lit.sampling): Algorithm 2, DDIM, schedules for fewer steps, the exact denoiser, Langevin."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from sr3lit.data import downsample, upsample
from sr3lit.posterior import posterior_mean_variance, predict_y0_from_noise
from sr3lit.sampling import (ExactDenoiser, SamplingTrace, annealed_langevin, implied_score, p_sample_step,
                             reverse_step_coefficients, sample, sampling_schedule, Symmetrised, Consistent,
                             resize_matrix, Guided)
from sr3lit.schedules import NoiseSchedule

LINEAR = NoiseSchedule.make('linear', 1000, 1e-4, 2e-2)
REPORT = NoiseSchedule.make('linear', 2000)            # the report's 1e-6..1e-2, T = 2000
MU, TAU = 0.3, 0.5                                     # the Gaussian toy: data N(MU, TAU^2) in every pixel


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def gaussian_toy(dtype=torch.float64):
    return ExactDenoiser(torch.full((1, 1, 1, 1), MU, dtype=dtype), std=TAU)


def toy_chain_moments(schedule, noise_var, precision=lambda g: 1 / (g * TAU**2 + 1 - g)):
    """Exact mean and variance of DDPM's output on the Gaussian toy (no clipping), written from the DDPM formulas:
    y0_hat = (y - sqrt(1-g) eps)/sqrt(g), mean = c1 y0_hat + c2 y, eps = sqrt(1-g) (y - sqrt(g) MU) precision(g), the
    precision of the noised marginal the network's score belongs to (the toy's own: 1 / (g TAU^2 + 1 - g))."""
    m, q = 0.0, 1.0
    for i in reversed(range(schedule.T)):
        g, gp, b = schedule.gammas[i], schedule.gammas_prev[i], schedule.betas[i]
        c1, c2 = math.sqrt(gp) * b / (1 - g), math.sqrt(1 - b) * (1 - gp) / (1 - g)
        k = math.sqrt(1 - g) * precision(g)                             # eps = k (y - sqrt(g) MU)
        slope = c1 * (1 - math.sqrt(1 - g) * k) / math.sqrt(g) + c2
        m = slope * m + c1 * math.sqrt(1 - g) * k * MU
        q = slope**2 * q + (noise_var(i) if i > 0 else 0.0)
    return m, q


def within_se(draws, mean, var, n_se=5.0):
    n = draws.numel()
    assert abs(draws.mean().item() - mean) <= n_se * math.sqrt(var / n), (draws.mean().item(), mean)
    assert abs(draws.var().item() - var) <= n_se * var * math.sqrt(2 / (n - 1)), (draws.var().item(), var)


class Recorder(nn.Module):
    "Keeps every (input, noise level) the wrapped model is called with, and whether it was in training mode."
    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.modes = model, [], []

    def forward(self, x, level):
        self.calls.append((x.clone(), level.clone())); self.modes.append(self.training)
        return self.model(x, level)


def pictures(n=4, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ---------------------------------------------------------------- Algorithm 2 on the Gaussian toy

@pytest.mark.parametrize('variance', ['posterior', 'beta'])
def test_algorithm2_output_has_the_exact_chain_distribution(variance):
    sched = LINEAR.respace(60)
    var_of = (lambda i: sched.betas[i] * (1 - sched.gammas_prev[i]) / (1 - sched.gammas[i])) if variance == 'posterior' \
        else (lambda i: sched.betas[i])
    mean, var = toy_chain_moments(sched, var_of)
    x = torch.zeros(20_000, 1, 1, 1, dtype=torch.float64)
    out = sample(gaussian_toy(), x, sched, variance=variance, clip_denoised=False, seed=0, progress=False)
    within_se(out.flatten(), mean, var)


@pytest.mark.parametrize('temperature', [0.0, 0.6, 1.0])
def test_temperature_scales_every_steps_noise_variance_by_its_square(temperature):
    sched = LINEAR.respace(60)
    posterior = lambda i: sched.betas[i] * (1 - sched.gammas_prev[i]) / (1 - sched.gammas[i])
    mean, var = toy_chain_moments(sched, lambda i: temperature**2 * posterior(i))
    x = torch.zeros(20_000, 1, 1, 1, dtype=torch.float64)
    out = sample(gaussian_toy(), x, sched, clip_denoised=False, seed=0, progress=False, temperature=temperature)
    within_se(out.flatten(), mean, var)


def test_temperature_one_is_the_sampler_and_a_negative_one_is_refused():
    x, sched = torch.zeros(4, 3, 8, 8), LINEAR.respace(20)
    toy = ExactDenoiser(pictures(3, 8), std=0.2)
    assert torch.equal(sample(toy, x, sched, seed=5, progress=False, temperature=1.0), sample(toy, x, sched, seed=5, progress=False))
    with pytest.raises(ValueError, match='temperature'): sample(toy, x, sched, progress=False, temperature=-1.0)


@pytest.mark.parametrize('turns,flip', [(1, False), (2, False), (3, True), (0, True)])
def test_symmetrised_network_commutes_with_the_squares_symmetries(turns, flip):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 3, 5, padding=2)
    class Net(nn.Module):
        def __init__(self): super().__init__(); self.conv = conv
        def forward(self, x, level): return self.conv(x) * level.view(-1, 1, 1, 1)
    g = lambda v: torch.rot90(v.flip(-1) if flip else v, turns, (-2, -1))
    x, level = torch.randn(3, 6, 10, 10), torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        sym = Symmetrised(Net())
        assert not torch.allclose(Net()(g(x), level), g(Net()(x, level)), atol=1e-3)
        torch.testing.assert_close(sym(g(x), level), g(sym(x, level)), atol=1e-5, rtol=1e-5)
        by_hand = sum(torch.rot90(Net()(torch.rot90(x, k, (-2, -1)), level), -k, (-2, -1)) +
                      torch.rot90(Net()(torch.rot90(x, k, (-2, -1)).flip(-1), level).flip(-1), -k, (-2, -1)) for k in range(4)) / 8
        torch.testing.assert_close(sym(x, level), by_hand, atol=1e-6, rtol=1e-6)


@given(st.sampled_from([(4, 16), (8, 32), (8, 16), (16, 32)]), st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_resize_matrix_is_chapter_06s_resize(sizes, seed):
    small, big = sizes
    g = torch.Generator().manual_seed(seed)
    hr = 0.5 * torch.rand(2, 3, big, big, dtype=torch.float64, generator=g) - 0.25       # no clipping in reach
    lr = 0.5 * torch.rand(2, 3, small, small, dtype=torch.float64, generator=g) - 0.25
    A, U = resize_matrix(big, small), resize_matrix(small, big)
    torch.testing.assert_close(A @ hr @ A.T, downsample(hr, small), atol=1e-12, rtol=0)
    torch.testing.assert_close(U @ lr @ U.T, upsample(lr, big), atol=1e-12, rtol=0)


@given(st.sampled_from([(4, 16), (8, 32), (16, 32)]), st.sampled_from([None, 4.0]), st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_consistent_projection_is_the_nearest_image_that_shrinks_to_the_input(sizes, scale, seed):
    small, big = sizes
    g = torch.Generator().manual_seed(seed)
    lr = 0.5 * torch.rand(2, 3, small, small, dtype=torch.float64, generator=g) - 0.25
    x_up = upsample(lr, big)
    A = resize_matrix(big, small)
    proj = Consistent(None, big // small, scale)
    y0 = torch.rand(2, 3, big, big, dtype=torch.float64, generator=g) * 2 - 1           # in the chain's own terms
    p = proj.project(y0, x_up)
    image = (lambda z: z) if scale is None else (lambda z: x_up + z / scale)
    torch.testing.assert_close(A @ image(p) @ A.T, lr, atol=1e-9, rtol=0)               # shrinks to the input
    torch.testing.assert_close(proj.project(p, x_up), p, atol=1e-9, rtol=0)             # a projection: twice is once
    # any other image that shrinks to the input lies further away: add to p an image that shrinks to zero
    w = torch.randn(2, 3, big, big, dtype=torch.float64, generator=g)
    zero_shrink = w - torch.linalg.pinv(A) @ (A @ w @ A.T) @ torch.linalg.pinv(A).T
    torch.testing.assert_close(A @ zero_shrink @ A.T, torch.zeros_like(lr), atol=1e-9, rtol=0)
    torch.testing.assert_close(w - proj.seen(w), zero_shrink, atol=1e-12, rtol=0)       # seen: the part the shrink keeps
    other = p + (zero_shrink if scale is None else scale * zero_shrink)
    assert ((p - y0).pow(2).sum() < (other - y0).pow(2).sum()).item()


@given(st.sampled_from([(16, 32), (32, 16), (8, 24)]), st.sampled_from([2, 4]), st.integers(0, 2**16))
@settings(max_examples=15, deadline=None)
def test_consistent_projection_of_images_that_are_not_square(size, factor, seed):
    H, W = size
    g = torch.Generator().manual_seed(seed)
    lr = 0.5 * torch.rand(1, 3, H // factor, W // factor, dtype=torch.float64, generator=g) - 0.25
    y0 = torch.rand(1, 3, H, W, dtype=torch.float64, generator=g) * 2 - 1
    p = Consistent(None, factor).project(y0, upsample(lr, (H, W)))
    torch.testing.assert_close(resize_matrix(H, H // factor) @ p @ resize_matrix(W, W // factor).T, lr, atol=1e-9, rtol=0)


def test_consistent_refuses_bad_factors_and_sizes():
    for factor in (0, 2.5, True):
        with pytest.raises(ValueError, match='factor'): Consistent(None, factor)
    with pytest.raises(ValueError, match='not a multiple'): Consistent(None, 4).project(torch.zeros(1, 3, 30, 32), torch.zeros(1, 3, 30, 32))


def test_consistent_network_implies_the_projected_estimate():
    class Net(nn.Module):
        def forward(self, x, level): return torch.tanh(x[:, 3:] - 0.3 * x[:, :3].roll(1, -1)) * level.view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(3)
    lr = 0.5 * torch.rand(3, 3, 8, 8, dtype=torch.float64, generator=g) - 0.25
    x_up = upsample(lr, 32)
    y_t, level = torch.randn(3, 3, 32, 32, dtype=torch.float64, generator=g), torch.tensor([0.3, 0.7, 0.95], dtype=torch.float64)
    sqrt_1mg = (1 - level**2).sqrt().view(-1, 1, 1, 1)
    implied = lambda eps: (y_t - sqrt_1mg * eps) / level.view(-1, 1, 1, 1)          # y0_hat from the noise, written out
    x = torch.cat([x_up, y_t], 1)
    for scale in (None, 4.0):
        wrapped = Consistent(Net(), 4, scale)
        torch.testing.assert_close(implied(wrapped(x, level)), wrapped.project(implied(Net()(x, level)), x_up), atol=1e-9, rtol=0)
    A = resize_matrix(32, 8)
    out = sample(Consistent(Net(), 4, 4.0), x_up, LINEAR.respace(10), clip_denoised=False, seed=0, progress=False)
    plain = sample(Net(), x_up, LINEAR.respace(10), clip_denoised=False, seed=0, progress=False)
    torch.testing.assert_close(A @ (x_up + out / 4) @ A.T, lr, atol=1e-9, rtol=0)      # the chain ends consistent
    assert (A @ (x_up + plain / 4) @ A.T - lr).abs().max() > 1e-3                       # which the plain chain does not


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.1, 1.0), st.floats(0.0, 3.0))
def test_guided_score_is_that_of_the_two_gaussians_combined(gamma, tau_b, w):
    "Good network exact for N(MU, TAU^2), bad for N(MU, tau_b^2): the guided score is w s_good + (1 - w) s_bad, in closed form."
    good, bad = gaussian_toy(), ExactDenoiser(torch.full((1, 1, 1, 1), MU, dtype=torch.float64), std=tau_b)
    y = torch.linspace(-3, 3, 7, dtype=torch.float64).reshape(-1, 1, 1, 1)
    precision = w / (gamma * TAU**2 + 1 - gamma) + (1 - w) / (gamma * tau_b**2 + 1 - gamma)
    score = implied_score(Guided(good, bad, w), torch.zeros_like(y), y, gamma)
    torch.testing.assert_close(score, -(y - math.sqrt(gamma) * MU) * precision, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize('w', [0.0, 1.0, 1.5])
def test_guided_chain_has_the_moments_of_the_guided_recursion(w):
    "Algorithm 2 with a guided Gaussian pair against its exact moments: the DDPM recursion with the guided marginal's precision."
    tau_b, sched = 0.3, LINEAR.respace(50)
    m, q = toy_chain_moments(sched, lambda i: sched.betas[i] * (1 - sched.gammas_prev[i]) / (1 - sched.gammas[i]),
                             lambda g: w / (g * TAU**2 + 1 - g) + (1 - w) / (g * tau_b**2 + 1 - g))
    bad = ExactDenoiser(torch.full((1, 1, 1, 1), MU, dtype=torch.float64), std=tau_b)
    out = sample(Guided(gaussian_toy(), bad, w), torch.zeros(20_000, 1, 1, 1, dtype=torch.float64), sched,
                 clip_denoised=False, seed=2, progress=False)
    within_se(out.flatten(), m, q)
    if w == 1.5: assert math.sqrt(q) > TAU * 1.05           # a bad network that shrinks too much: guidance widens the samples


def test_algorithm2_with_all_steps_reaches_the_data_distribution():
    mean, var = toy_chain_moments(LINEAR, lambda i: LINEAR.betas[i] * (1 - LINEAR.gammas_prev[i]) / (1 - LINEAR.gammas[i]))
    assert mean == pytest.approx(MU, abs=1e-3) and math.sqrt(var) == pytest.approx(TAU, abs=0.01)
    x = torch.zeros(4000, 1, 1, 1, dtype=torch.float64)
    out = sample(gaussian_toy(), x, LINEAR, clip_denoised=False, seed=1, progress=False).flatten()
    assert out.mean().item() == pytest.approx(MU, abs=5 * TAU / math.sqrt(4000))
    assert out.std().item() == pytest.approx(TAU, abs=0.004 + 5 * TAU / math.sqrt(8000))


def test_fast_loop_equals_repeated_reverse_steps():
    model, x = ExactDenoiser(pictures(), std=0.1), torch.zeros(3, 3, 6, 6)
    sched = REPORT.respace(30)
    fast = sample(model, x, sched, seed=11, progress=False)
    gen = torch.Generator().manual_seed(11)
    y = torch.randn(3, 3, 6, 6, generator=gen)
    for t in range(sched.T, 0, -1):
        y = p_sample_step(model, sched, x, y, t, generator=gen)
    torch.testing.assert_close(fast, y, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- direction, last step, schedules

@pytest.mark.parametrize('sched', [REPORT, REPORT.respace(50), REPORT.rediscretize(50), sampling_schedule(REPORT, 20, 'log_snr')],
                         ids=['full', 'respace', 'rediscretize', 'log_snr'])
def test_time_runs_from_T_down_to_1(sched):
    rec = Recorder(ExactDenoiser(pictures(), std=0.05))
    sample(rec, torch.zeros(2, 3, 6, 6), sched, seed=0, progress=False)
    levels = torch.stack([level[0] for _, level in rec.calls]).double()
    assert len(levels) == sched.T
    assert (levels.diff() > 0).all()                                  # sqrt(gamma) grows as t goes down
    np.testing.assert_allclose(levels.numpy(), np.sqrt(sched.gammas[::-1]), rtol=1e-6)
    for x, level in rec.calls: assert level.shape == (2,) and x.shape == (2, 6, 6, 6)


@pytest.mark.parametrize('sampler,variance,eta', [('ddpm', 'posterior', 0.0), ('ddpm', 'beta', 0.0), ('ddim', 'posterior', 1.0),
                                                  ('ddim', 'posterior', 0.5)])
def test_no_noise_is_added_at_the_last_step(sampler, variance, eta):
    model = ExactDenoiser(pictures(), std=0.2)
    rec, sched = Recorder(model), REPORT.respace(12)
    out = sample(rec, torch.zeros(3, 3, 6, 6), sched, sampler=sampler, eta=eta, variance=variance, seed=5, progress=False)
    x_last, level_last = rec.calls[-1]
    y1 = x_last[:, 3:]
    # the output is a deterministic function of y_1: the clipped y0_hat (y_0 = mean, and the mean at t=1 is y0_hat)
    expected = predict_y0_from_noise(sched, y1, 1, model(x_last, level_last)).clamp(-1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_a_one_step_schedule_is_deterministic_given_y_T():
    sched, y_T = NoiseSchedule.from_gammas([0.3]), torch.randn(2, 3, 6, 6)
    model = ExactDenoiser(pictures(), std=0.1)
    a = sample(model, torch.zeros(2, 3, 6, 6), sched, y_T=y_T, seed=1, progress=False)
    b = sample(model, torch.zeros(2, 3, 6, 6), sched, y_T=y_T, seed=2, progress=False)
    assert torch.equal(a, b)


def test_sampling_schedule_choices():
    assert sampling_schedule(REPORT) is REPORT and sampling_schedule(REPORT, 2000, 'rediscretize') is REPORT
    r, d = sampling_schedule(REPORT, 50), sampling_schedule(REPORT, 50, 'rediscretize')
    assert r.T == d.T == 50
    assert r.gammas[-1] == REPORT.gammas[-1] and np.isin(r.gammas, REPORT.gammas).all()
    assert d.gammas[-1] == pytest.approx(np.prod(1 - np.linspace(1e-6, 1e-2, 50)), rel=1e-12)
    assert d.gammas[-1] == pytest.approx(0.78, abs=0.01)
    ls = sampling_schedule(REPORT, 7, 'log_snr')
    snr = np.log(ls.gammas / (1 - ls.gammas))
    np.testing.assert_allclose(ls.gammas[[0, -1]], REPORT.gammas[[0, -1]], rtol=1e-12)
    np.testing.assert_allclose(np.diff(snr), np.full(6, (snr[-1] - snr[0]) / 6), rtol=1e-9)
    assert sampling_schedule(REPORT, 1, 'log_snr').gammas[-1] == REPORT.gammas[-1]


@pytest.mark.parametrize('method', ['respace', 'rediscretize'])
def test_the_exact_denoiser_reveals_the_reports_50_step_failure(method):
    """Each condition names one picture (a 32-nat margin). Started from pure noise that it takes for 88% signal, the
    rediscretized 50-step chain lets the noise outvote the condition; the respaced chain always lands on the right one."""
    hr, conds = pictures(6, 16, seed=3), 0.35 * torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    model = ExactDenoiser(hr, std=0.03, conditions=conds, condition_std=1.0)
    out = sample(model, conds, sampling_schedule(REPORT, 50, method), n_samples=4, out_channels=3, seed=0, progress=False)
    right = (torch.cdist(out.flatten(1), hr.flatten(1)).argmin(1) == torch.arange(6).repeat_interleave(4)).double().mean()
    assert (right == 1) if method == 'respace' else (right < 0.5)


# ---------------------------------------------------------------- DDIM

def test_ddim_eta0_is_deterministic_given_y_T():
    model, x, y_T = ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    outs = [sample(model, x, REPORT.respace(20), sampler='ddim', eta=0.0, y_T=y_T, seed=s, progress=False) for s in (0, 1)]
    assert torch.equal(*outs)
    assert (reverse_step_coefficients(REPORT, 'ddim', eta=0.0)['noise_std'] == 0).all()


def test_ddim_eta1_is_the_ddpm_step_and_std():
    sched = REPORT.respace(40)
    ts, one = torch.arange(1, 41), torch.ones(40, 1, 1, 1, dtype=torch.float64)
    coef_y0, var = posterior_mean_variance(sched, one, 0 * one, ts)
    coef_yt, _ = posterior_mean_variance(sched, 0 * one, one, ts)
    c = reverse_step_coefficients(sched, 'ddim', eta=1.0)
    np.testing.assert_allclose(c['noise_std'], var.flatten().sqrt().numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(c['next_from_y0'], coef_y0.flatten().numpy(), rtol=1e-8)
    np.testing.assert_allclose(c['next_from_yt'], coef_yt.flatten().numpy(), rtol=1e-8, atol=1e-14)
    # so, with the same noise, whole DDIM(eta=1) and DDPM runs agree
    model, x = ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6)
    a = sample(model, x, sched, sampler='ddim', eta=1.0, seed=3, progress=False)
    b = sample(model, x, sched, sampler='ddpm', seed=3, progress=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


finite_schedules = st.lists(st.floats(1e-4, 0.5), min_size=1, max_size=40).map(lambda b: NoiseSchedule(np.array(b)))


@given(finite_schedules, st.floats(0.0, 1.0), st.data())
@settings(max_examples=60, deadline=None)
def test_ddim_and_posterior_ddpm_steps_preserve_the_marginals(sched, eta, data):
    """With the true y_0 and eps: y_t ~ q(y_t|y_0) gives y_{t-1} ~ q(y_{t-1}|y_0), i.e. mean sqrt(gamma_{t-1}) y_0 and
    variance 1 - gamma_{t-1}, for DDIM at any eta and for DDPM with the posterior variance."""
    sampler = data.draw(st.sampled_from(['ddim', 'ddpm']))
    c = reverse_step_coefficients(sched, sampler, eta=eta)
    g, gp = sched.gammas, sched.gammas_prev
    # y0_hat = a y_t - b eps = y_0 exactly; y_{t-1} = c y_0 + d (sqrt(g) y_0 + sqrt(1-g) eps) + s z
    np.testing.assert_allclose(c['y0_from_yt'] * np.sqrt(g) , 1.0, rtol=1e-12)
    np.testing.assert_allclose(c['y0_from_yt'] * np.sqrt(1 - g), c['y0_from_eps'], rtol=1e-10)
    np.testing.assert_allclose(c['next_from_y0'] + c['next_from_yt'] * np.sqrt(g), np.sqrt(gp), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c['next_from_yt'] ** 2 * (1 - g) + c['noise_std'] ** 2, 1 - gp, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- seeds, shapes, options

def test_same_seed_same_samples_bit_for_bit_and_another_seed_differs():
    model, x = ExactDenoiser(pictures(), std=0.1), torch.rand(2, 3, 6, 6) * 2 - 1
    sched = REPORT.respace(25)
    a = sample(model, x, sched, seed=42, progress=False)
    assert torch.equal(a, sample(model, x, sched, seed=42, progress=False))
    assert torch.equal(a, sample(model, x, sched, generator=torch.Generator().manual_seed(42), progress=False))
    assert not torch.equal(a, sample(model, x, sched, seed=43, progress=False))
    torch.manual_seed(7); b = sample(model, x, sched, progress=False)
    torch.manual_seed(7); assert torch.equal(b, sample(model, x, sched, progress=False))


def test_y_T_is_the_generators_first_draw():
    rec, x = Recorder(ExactDenoiser(pictures(), std=0.1)), torch.zeros(2, 3, 6, 6)
    sample(rec, x, REPORT.respace(5), seed=9, progress=False)
    assert torch.equal(rec.calls[0][0][:, 3:], torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(rec.calls[0][0][:, :3], x)                    # the condition comes first in cat([x_up, y_t])


def test_trajectory_shapes_and_contents():
    model, x, y_T = ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6), torch.randn(6, 3, 6, 6)
    sched = REPORT.respace(20)
    out, trace = sample(model, x, sched, n_samples=3, y_T=y_T, every=6, seed=0, progress=False)
    assert isinstance(trace, SamplingTrace)
    assert trace.timesteps == [20, 14, 8, 2, 0]
    assert trace.states.shape == trace.denoised.shape == (5, 6, 3, 6, 6)
    assert torch.equal(trace.states[0], y_T) and torch.equal(trace.states[-1], out) and torch.equal(trace.denoised[-1], out)
    assert trace.denoised[:-1].abs().max() <= 1                       # y0_hat is clipped
    out_all, full = sample(model, x, sched, y_T=y_T[:2], return_trajectory=True, seed=0, progress=False)
    assert full.timesteps == list(range(20, -1, -1)) and full.states.shape == (21, 2, 3, 6, 6)
    assert torch.equal(out_all, sample(model, x, sched, y_T=y_T[:2], seed=0, progress=False))   # recording changes nothing


def test_n_samples_rows_are_grouped_by_input():
    hr = pictures(3, 6, seed=1)
    conds = torch.randn(3, 2, 6, 6)
    model = ExactDenoiser(hr, std=0.02, conditions=conds, condition_std=0.5)   # each condition names one picture
    out = sample(model, conds, REPORT.respace(30), n_samples=4, out_channels=3, seed=0, progress=False)
    assert out.shape == (12, 3, 6, 6)
    nearest = torch.cdist(out.flatten(1), hr.flatten(1)).argmin(1)
    assert nearest.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert out.view(3, 4, 3, 6, 6).shape == (3, 4, 3, 6, 6)


def test_clip_denoised():
    wild = lambda x, level: torch.full_like(x[:, 3:], -8.0)          # an eps that implies a y0_hat far outside [-1, 1]
    x = torch.zeros(2, 3, 4, 4)
    clipped = sample(wild, x, REPORT.respace(10), seed=0, progress=False)
    free = sample(wild, x, REPORT.respace(10), clip_denoised=False, seed=0, progress=False)
    assert clipped.abs().max() <= 1 and free.abs().max() > 1
    # one step at t = 500 from y_t = 0 with no noise: the posterior mean of the clipped (or raw) y0_hat
    y_t, t = torch.zeros(2, 3, 4, 4, dtype=torch.float64), 500
    raw = predict_y0_from_noise(REPORT, y_t, t, torch.full_like(y_t, -8.0))
    assert raw.min() > 1
    for clip, y0_hat in ((True, raw.clamp(-1, 1)), (False, raw)):
        step = p_sample_step(wild, REPORT, x.double(), y_t, t, noise=torch.zeros_like(y_t), clip_denoised=clip)
        torch.testing.assert_close(step, posterior_mean_variance(REPORT, y0_hat, y_t, t)[0])


def test_model_runs_in_eval_mode_and_its_mode_is_restored():
    rec = Recorder(ExactDenoiser(pictures(), std=0.1)).train()
    sample(rec, torch.zeros(1, 3, 6, 6), REPORT.respace(5), seed=0, progress=False)
    annealed_langevin(rec, torch.zeros(1, 3, 6, 6), REPORT.respace(3), n_steps_each=2, seed=0, progress=False)
    assert not any(rec.modes) and rec.training


def test_float64_inputs_give_float64_samples():
    out = sample(gaussian_toy(), torch.zeros(3, 1, 1, 1, dtype=torch.float64), LINEAR.respace(5), seed=0, progress=False)
    assert out.dtype == torch.float64


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize('kwargs,error,message', [
    (dict(sampler='ddim', eta=1.5), ValueError, 'eta must lie in [0, 1]'),
    (dict(sampler='ddim', eta=-0.1), ValueError, 'eta must lie in [0, 1]'),
    (dict(sampler='plms'), ValueError, 'unknown sampler'),
    (dict(variance='learned'), ValueError, 'unknown variance'),
    (dict(n_samples=0), ValueError, 'n_samples'),
    (dict(every=0), ValueError, 'every'),
    (dict(seed=1, generator=torch.Generator()), ValueError, 'not both'),
    (dict(y_T=torch.zeros(5, 3, 6, 6)), ValueError, 'y_T must have shape'),
])
def test_sample_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message.replace('[', r'\[').replace(']', r'\]')):
        sample(ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6), REPORT.respace(5), progress=False, **kwargs)


def test_other_bad_inputs():
    model = ExactDenoiser(pictures(), std=0.1)
    with pytest.raises(ValueError, match='1..T=2000'): sampling_schedule(REPORT, 2001)
    with pytest.raises(ValueError, match='1..T=2000'): sampling_schedule(REPORT, 3000, 'rediscretize')
    with pytest.raises(ValueError, match='unknown method'): sampling_schedule(REPORT, 10, 'cosine')
    with pytest.raises(TypeError, match='NoiseSchedule'): sampling_schedule(REPORT.betas, 10)
    with pytest.raises(TypeError, match='NoiseSchedule'): sample(model, torch.zeros(2, 3, 6, 6), REPORT.betas, progress=False)
    with pytest.raises(TypeError, match='x_up'): sample(model, np.zeros((2, 3, 6, 6)), REPORT, progress=False)
    with pytest.raises(ValueError, match='model returned shape'):
        sample(lambda x, l: x, torch.zeros(2, 3, 6, 6), REPORT.respace(3), progress=False)
    with pytest.raises(ValueError, match='1..T=2000'): p_sample_step(model, REPORT, torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6), 0)
    with pytest.raises(ValueError, match='unknown variance'):
        p_sample_step(model, REPORT, torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6), 5, variance='large')
    with pytest.raises(ValueError, match=r'\(0, 1\)'): implied_score(model, torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6), 1.0)
    with pytest.raises(ValueError, match='condition_std'): ExactDenoiser(pictures(), conditions=pictures())
    with pytest.raises(ValueError, match='n_steps_each'):
        annealed_langevin(model, torch.zeros(1, 3, 6, 6), REPORT.respace(3), n_steps_each=0, progress=False)
    with pytest.raises(ValueError, match='step_size'):
        annealed_langevin(model, torch.zeros(1, 3, 6, 6), REPORT.respace(3), step_size=-1.0, progress=False)


# ---------------------------------------------------------------- the exact denoiser and the score (section 2.5)

def noised_mixture(images, std, gamma, log_probs=None):
    "The noised mixture's density; log-probabilities, because Categorical(probs=) clamps them to at least float64 eps."
    m = images.double().flatten(1)
    log_probs = torch.zeros(len(m), dtype=torch.float64) if log_probs is None else log_probs
    comp = torch.distributions.Independent(torch.distributions.Normal(math.sqrt(gamma) * m, math.sqrt(gamma * std**2 + 1 - gamma)), 1)
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=log_probs), comp)


@given(st.floats(0.001, 0.999), st.floats(0.0, 0.5), st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_implied_score_of_the_exact_denoiser_is_the_true_score(gamma, std, seed):
    g = torch.Generator().manual_seed(seed)
    imgs = (torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64) * 2 - 1)
    y = (math.sqrt(gamma) * imgs[torch.randint(4, (5,), generator=g)]
         + math.sqrt(1 - gamma) * torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)).requires_grad_()
    true_score = torch.autograd.grad(noised_mixture(imgs, std, gamma).log_prob(y.flatten(1)).sum(), y)[0]
    score = implied_score(ExactDenoiser(imgs, std=std), torch.zeros(5, 1, 3, 3, dtype=torch.float64), y.detach(), gamma)
    torch.testing.assert_close(score, true_score, rtol=1e-7, atol=1e-7)


@given(st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_implied_score_with_a_condition_and_for_the_gaussian(seed):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    conds = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    model = ExactDenoiser(imgs, std=0.1, conditions=conds, condition_std=0.8)
    x = conds[1:2] + 0.4 * torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64)
    log_p_i = torch.distributions.Normal(conds.flatten(1), 0.8).log_prob(x.flatten(1)).sum(1).log_softmax(0)   # p(i | x) is often below 1e-16
    y = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    true_score = torch.autograd.grad(noised_mixture(imgs, 0.1, 0.6, log_p_i).log_prob(y.flatten(1)).sum(), y)[0]
    torch.testing.assert_close(implied_score(model, x, y.detach(), 0.6), true_score, rtol=1e-8, atol=1e-8)
    # Gaussian data: the score of N(sqrt(g) MU, g TAU^2 + 1 - g) in closed form, gamma per batch element
    y, gam = torch.randn(3, 1, 1, 1, dtype=torch.float64), torch.tensor([0.1, 0.5, 0.99], dtype=torch.float64)
    closed = -(y - gam.sqrt().view(-1, 1, 1, 1) * MU) / (gam * TAU**2 + 1 - gam).view(-1, 1, 1, 1)
    torch.testing.assert_close(implied_score(gaussian_toy(), torch.zeros_like(y), y, gam), closed)


# ---------------------------------------------------------------- annealed Langevin

def test_langevin_at_one_level_has_the_ula_stationary_variance():
    v, step = 0.5 * TAU**2 + 0.5, 0.2                                 # level gamma = 0.5: target N(sqrt(.5) MU, v)
    out = annealed_langevin(gaussian_toy(), torch.zeros(20_000, 1, 1, 1, dtype=torch.float64), NoiseSchedule.from_gammas([0.5]),
                            n_steps_each=120, step_size=step, denoise_last=False, seed=0, progress=False)
    within_se(out.flatten(), math.sqrt(0.5) * MU, v / (1 - step / (2 * v)))


@pytest.mark.parametrize('rescale', [True, False])
def test_annealed_langevin_reaches_the_data_distribution(rescale):
    levels = sampling_schedule(LINEAR, 20, 'log_snr')
    out = annealed_langevin(gaussian_toy(), torch.zeros(6000, 1, 1, 1, dtype=torch.float64), levels, n_steps_each=50,
                            step_size=0.3 * (1 - levels.gammas[0]), rescale=rescale, clip_denoised=False, seed=0,
                            progress=False).flatten()
    assert out.mean().item() == pytest.approx(MU, abs=0.02) and out.std().item() == pytest.approx(TAU, abs=0.025)


def test_langevin_shapes_trace_and_seed():
    model, x = ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6)
    levels = REPORT.respace(4)
    out, trace = annealed_langevin(model, x, levels, n_steps_each=3, n_samples=2, return_trajectory=True, seed=1, progress=False)
    assert out.shape == (4, 3, 6, 6) and out.abs().max() <= 1
    assert trace.timesteps == [4, 3, 2, 1] and trace.states.shape == (4, 4, 3, 6, 6)
    assert torch.equal(trace.denoised[-1], out)
    again = annealed_langevin(model, x, levels, n_steps_each=3, n_samples=2, seed=1, progress=False)
    assert torch.equal(out, again)


# ---------------------------------------------------------------- DPM-Solver++(2M) (issue 11)

def gaussian_flow_answer(y_T, gamma_T, gamma_1):
    "The probability-flow ODE on N(MU, TAU^2) data, solved exactly from gamma_T to gamma_1, then the exact y0_hat there."
    v = lambda g: g * TAU**2 + 1 - g
    y_1 = math.sqrt(gamma_1) * MU + math.sqrt(v(gamma_1) / v(gamma_T)) * (y_T - math.sqrt(gamma_T) * MU)
    return MU + math.sqrt(gamma_1) * TAU**2 / v(gamma_1) * (y_1 - math.sqrt(gamma_1) * MU)


def toy_errors(sampler, Ns, method='log_snr'):
    y_T = torch.linspace(-3, 3, 13, dtype=torch.float64).reshape(-1, 1, 1, 1)
    errs = []
    for N in Ns:
        levels = sampling_schedule(REPORT, N, method)
        out = sample(gaussian_toy(), torch.zeros_like(y_T), levels, sampler=sampler, y_T=y_T, clip_denoised=False, progress=False)
        errs.append((out - gaussian_flow_answer(y_T, levels.gammas[-1], levels.gammas[0])).abs().max().item())
    return np.array(errs)


def test_dpmpp2m_is_second_order_on_the_gaussian_toy_and_ddim_first():
    Ns = (40, 80, 160, 320)
    second, first = toy_errors('dpmpp2m', Ns), toy_errors('ddim', Ns)
    slope2, slope1 = np.polyfit(np.log(Ns), np.log(second), 1)[0], np.polyfit(np.log(Ns), np.log(first), 1)[0]
    assert slope2 == pytest.approx(-2, abs=0.15) and slope1 == pytest.approx(-1, abs=0.1)
    assert (second < first / 10).all()
    assert toy_errors('dpmpp2m', [10])[0] < toy_errors('ddim', [10])[0] / 5


def test_dpmpp2m_local_step_is_third_order_against_quadrature():
    "One step from lambda_s to lambda_s + h with a known y0_hat(lambda): the exact update is a quadrature, the error O(h^3)."
    x0 = lambda lam: 0.8 * np.tanh(lam - 0.3)
    lam_s, y_s, errs = -0.5, 0.7, []
    for h in (0.2, 0.1, 0.05):
        lams = np.array([lam_s + 2 * h, lam_s + h, lam_s, lam_s - h])            # t = 1..4
        sched = NoiseSchedule.from_gammas(1 / (1 + np.exp(-2 * lams)))
        c = reverse_step_coefficients(sched, 'dpmpp2m')
        grid = np.linspace(lam_s, lam_s + h, 100_001)
        f = np.exp(grid) * x0(grid)
        sigma = np.sqrt(1 - sched.gammas)
        exact = sigma[1] * (y_s / sigma[2] + np.sum((f[1:] + f[:-1]) / 2) * (grid[1] - grid[0]))
        w = c['extrapolation'][2]
        errs.append(abs(c['next_from_yt'][2] * y_s + c['next_from_y0'][2] * ((1 + w) * x0(lam_s) - w * x0(lam_s - h)) - exact))
    assert np.polyfit(np.log([0.2, 0.1, 0.05]), np.log(errs), 1)[0] == pytest.approx(3, abs=0.2)


def test_dpmpp2m_coefficients_are_ddim_eta0_plus_the_extrapolation():
    sched = sampling_schedule(REPORT, 12, 'karras')
    c, ddim = reverse_step_coefficients(sched, 'dpmpp2m'), reverse_step_coefficients(sched, 'ddim', eta=0.0)
    for k in ('noise_level', 'y0_from_yt', 'y0_from_eps', 'next_from_y0', 'next_from_yt', 'noise_std'):
        np.testing.assert_array_equal(c[k], ddim[k])
    assert (ddim['extrapolation'] == 0).all() and (reverse_step_coefficients(sched, 'ddpm')['extrapolation'] == 0).all()
    lam = np.log(np.sqrt(sched.gammas) / np.sqrt(1 - sched.gammas))         # t = 1..T
    for t in range(2, sched.T):                                               # w_t = h_t / (2 h_{t+1})
        assert c['extrapolation'][t - 1] == pytest.approx((lam[t - 2] - lam[t - 1]) / (2 * (lam[t - 1] - lam[t])), rel=1e-12)
    assert c['extrapolation'][0] == 0 and c['extrapolation'][-1] == 0


def test_dpmpp2m_agrees_with_many_step_ddim_on_the_mixture():
    "Both solve the same probability-flow ODE: 2000 DDIM steps are the reference; 10 DPM-Solver++(2M) steps are close."
    hr, conds = pictures(5, 8, seed=2), 0.5 * torch.randn(5, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    model = ExactDenoiser(hr, std=0.05, conditions=conds, condition_std=1.0)
    y_T = torch.randn(15, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    run = lambda sched, sampler: sample(model, conds.double(), sched, sampler=sampler, n_samples=3, y_T=y_T, progress=False)
    reference = run(sampling_schedule(REPORT, 2000, 'log_snr'), 'ddim')
    rms = lambda out: (out - reference).pow(2).mean().sqrt().item()
    assert rms(run(sampling_schedule(REPORT, 2000, 'log_snr'), 'dpmpp2m')) < 1e-3
    k10, k50 = sampling_schedule(REPORT, 10, 'karras'), sampling_schedule(REPORT, 50, 'karras')
    assert rms(run(k10, 'dpmpp2m')) < 0.3 * rms(run(k10, 'ddim'))
    assert rms(run(k50, 'dpmpp2m')) < 0.3 * rms(run(k50, 'ddim')) and rms(run(k50, 'dpmpp2m')) < 0.002
    nearest = lambda out: torch.cdist(out.flatten(1).float(), hr.flatten(1)).argmin(1)
    assert torch.equal(nearest(run(k10, 'dpmpp2m')), nearest(reference))


def test_dpmpp2m_calls_the_network_once_per_step_and_returns_the_last_estimate():
    for N in (1, 2, 3, 10):
        rec = Recorder(ExactDenoiser(pictures(), std=0.1))
        sched = sampling_schedule(REPORT, N, 'karras')
        out = sample(rec, torch.zeros(2, 3, 6, 6, dtype=torch.float64), sched, sampler='dpmpp2m', seed=0, progress=False)
        assert len(rec.calls) == N                                           # NFE = N, the final denoise included
        levels = torch.stack([lvl[0] for _, lvl in rec.calls]).double()
        np.testing.assert_allclose(levels.numpy(), np.sqrt(sched.gammas[::-1]), rtol=1e-12)
        x_last, lvl_last = rec.calls[-1]
        torch.testing.assert_close(out, predict_y0_from_noise(sched, x_last[:, 3:], 1, rec.model(x_last, lvl_last)).clamp(-1, 1))


def test_dpmpp2m_with_two_steps_is_ddim_and_is_deterministic_given_y_T():
    model, x = ExactDenoiser(pictures(), std=0.1), torch.zeros(2, 3, 6, 6)
    for sched in (REPORT.respace(1), REPORT.respace(2)):
        assert torch.equal(sample(model, x, sched, sampler='dpmpp2m', seed=4, progress=False),
                           sample(model, x, sched, sampler='ddim', seed=4, progress=False))
    y_T, sched = torch.randn(2, 3, 6, 6), sampling_schedule(REPORT, 8, 'karras')
    a = sample(model, x, sched, sampler='dpmpp2m', y_T=y_T, seed=0, progress=False)
    assert torch.equal(a, sample(model, x, sched, sampler='dpmpp2m', y_T=y_T, seed=1, progress=False))
    assert not torch.equal(a, sample(model, x, sched, sampler='ddim', y_T=y_T, progress=False))


def test_dpmpp2m_shapes_n_samples_trajectory_and_clip_bounds():
    hr, conds = pictures(3, 6, seed=1), torch.randn(3, 2, 6, 6)
    model = ExactDenoiser(hr, std=0.02, conditions=conds, condition_std=0.5)
    sched = sampling_schedule(REPORT, 10, 'karras')
    out, trace = sample(model, conds, sched, sampler='dpmpp2m', n_samples=4, out_channels=3, every=3, seed=0, progress=False)
    assert out.shape == (12, 3, 6, 6) and out.abs().max() <= 1
    assert torch.cdist(out.flatten(1), hr.flatten(1)).argmin(1).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert trace.timesteps == [10, 7, 4, 1, 0] and trace.states.shape == (5, 12, 3, 6, 6) and torch.equal(trace.states[-1], out)
    assert torch.equal(out, sample(model, conds, sched, sampler='dpmpp2m', n_samples=4, out_channels=3, seed=0, progress=False))
    lo, hi = -0.3 * torch.ones(3, 3, 6, 6), 0.2 * torch.ones(3, 3, 6, 6)
    boxed = sample(model, conds, sched, sampler='dpmpp2m', n_samples=4, out_channels=3, seed=0, progress=False, clip_bounds=(lo, hi))
    assert boxed.min() >= -0.3 - 1e-6 and boxed.max() <= 0.2 + 1e-6 and not torch.equal(boxed, out)
    wild = lambda x, level: torch.full_like(x[:, 3:], -8.0)               # y0_hat far above 1 at every level
    free = sample(wild, torch.zeros(2, 3, 4, 4), sched, sampler='dpmpp2m', clip_denoised=False, seed=0, progress=False)
    assert free.min() > 1 and sample(wild, torch.zeros(2, 3, 4, 4), sched, sampler='dpmpp2m', seed=0, progress=False).max() <= 1


def test_karras_levels():
    k = sampling_schedule(REPORT, 10, 'karras')
    np.testing.assert_allclose(k.gammas[[0, -1]], REPORT.gammas[[0, -1]], rtol=1e-9)    # the trained extremes
    root = (np.sqrt((1 - k.gammas) / k.gammas)) ** (1 / 7)
    np.testing.assert_allclose(np.diff(root), np.full(9, (root[-1] - root[0]) / 9), rtol=1e-9)
    assert (np.diff(k.gammas) < 0).all() and sampling_schedule(REPORT, 1, 'karras').gammas[-1] == REPORT.gammas[-1]


# ---------------------------------------------------------------- DPM-Solver++(2M) SDE

def test_dpmpp2m_sde_is_the_exponential_integrator_of_the_sde_from_lambda():
    "Coefficients from lambda alone (Lu et al. 2022, SDE-DPM-Solver++): sigma_t/sigma_s e^-h, alpha_t (1 - e^-2h), sigma_t sqrt(1 - e^-2h)."
    sched = sampling_schedule(REPORT, 12, 'log_snr')
    c = reverse_step_coefficients(sched, 'dpmpp2m_sde')
    alpha, sigma = np.sqrt(sched.gammas), np.sqrt(1 - sched.gammas)          # t = 1..T
    for t in range(2, sched.T + 1):                                           # the step from t to t - 1
        a_s, s_s, a_t, s_t = alpha[t - 1], sigma[t - 1], alpha[t - 2], sigma[t - 2]
        h = math.log(a_t / s_t) - math.log(a_s / s_s)
        assert c['next_from_yt'][t - 1] == pytest.approx(s_t / s_s * math.exp(-h), rel=1e-10)
        assert c['next_from_y0'][t - 1] == pytest.approx(a_t * (1 - math.exp(-2 * h)), rel=1e-10)
        assert c['noise_std'][t - 1] == pytest.approx(s_t * math.sqrt(1 - math.exp(-2 * h)), rel=1e-10)
    assert c['noise_std'][0] == 0 and c['next_from_y0'][0] == pytest.approx(1.0)          # the last step returns D_1 = y0_hat
    np.testing.assert_array_equal(c['extrapolation'], reverse_step_coefficients(sched, 'dpmpp2m')['extrapolation'])


def test_dpmpp2m_sde_keeps_the_spread_of_gaussian_data_where_ten_ddpm_steps_shrink_it():
    "Data N(MU, TAU^2), exact denoiser: 10 log-SNR steps of the SDE solver give the data's spread; Algorithm 2's 10 do not."
    x = torch.zeros(40_000, 1, 1, 1, dtype=torch.float64)
    levels = sampling_schedule(REPORT, 10, 'log_snr')
    std = {k: sample(gaussian_toy(), x, levels, sampler=k, clip_denoised=False, seed=4, progress=False).std().item()
           for k in ('ddpm', 'dpmpp2m_sde')}
    assert std['dpmpp2m_sde'] == pytest.approx(TAU, abs=0.02)
    assert std['ddpm'] < TAU - 0.1
    many = sample(gaussian_toy(), x, sampling_schedule(REPORT, 400, 'log_snr'), sampler='dpmpp2m_sde', clip_denoised=False,
                  seed=5, progress=False)
    assert many.mean().item() == pytest.approx(MU, abs=0.01) and many.std().item() == pytest.approx(TAU, abs=0.01)


# ---------------------------------------------------------------- the log-SNR window for few steps

def test_log_snr_window_spaces_levels_evenly_between_its_sigmas_inside_the_trained_range():
    from sr3lit.sampling import FEW_STEP_SIGMAS
    w = sampling_schedule(REPORT, 10, 'log_snr_window')
    sigma = np.sqrt((1 - w.gammas) / w.gammas)                                 # t = 1..T, least noisy first
    np.testing.assert_allclose(sigma[[0, -1]], FEW_STEP_SIGMAS, rtol=1e-9)
    np.testing.assert_allclose(np.diff(np.log(sigma)), np.full(9, math.log(FEW_STEP_SIGMAS[1] / FEW_STEP_SIGMAS[0]) / 9), rtol=1e-9)
    assert sampling_schedule(REPORT, 1, 'log_snr_window').gammas[0] == pytest.approx(1 / (1 + FEW_STEP_SIGMAS[1] ** 2), rel=1e-12)
    short = NoiseSchedule.make('linear', 100)                                  # its noisiest level is sigma ~ 0.8 < 20
    ws = sampling_schedule(short, 6, 'log_snr_window')
    assert ws.gammas[-1] == pytest.approx(short.gammas[-1], rel=1e-12) and ws.gammas[0] == pytest.approx(1 / (1 + 0.03**2), rel=1e-12)
    assert (np.diff(ws.gammas) < 0).all()


def test_log_snr_window_sampler_reaches_the_posterior_mean_spread_at_its_lowest_level():
    "Faint Gaussian detail N(MU, tau^2), tau = sigma_min, exact denoiser: many window steps end at E[y0 | y at sigma_min]."
    from sr3lit.sampling import FEW_STEP_SIGMAS
    tau = FEW_STEP_SIGMAS[0]
    faint = ExactDenoiser(torch.full((1, 1, 1, 1), MU, dtype=torch.float64), std=tau)
    x = torch.zeros(40_000, 1, 1, 1, dtype=torch.float64)
    run = lambda method: sample(faint, x, sampling_schedule(REPORT, 300, method), sampler='dpmpp2m_sde', clip_denoised=False,
                                seed=6, progress=False)
    window, full = run('log_snr_window'), run('log_snr')
    assert window.mean().item() == pytest.approx(MU, abs=0.002) and full.mean().item() == pytest.approx(MU, abs=0.002)
    assert window.std().item() == pytest.approx(tau**2 / math.sqrt(2 * tau**2), rel=0.02)   # tau^2 / sqrt(tau^2 + sigma_min^2)
    assert full.std().item() == pytest.approx(tau, rel=0.02)                                 # the full range keeps it


# ---------------------------------------------------------------- Karras' spacing inside a window: dpmpp2m_sde's levels

def test_karras_window_spaces_sigma_evenly_in_its_seventh_root_between_its_ends_inside_the_trained_range():
    from sr3lit.sampling import KARRAS_WINDOW_SIGMAS, SAMPLER_SCHEDULES
    lo, hi = KARRAS_WINDOW_SIGMAS
    k = sampling_schedule(REPORT, 10, 'karras_window')
    sigma = np.sqrt((1 - k.gammas) / k.gammas)                                 # t = 1..T, least noisy first
    np.testing.assert_allclose(sigma[[0, -1]], KARRAS_WINDOW_SIGMAS, rtol=1e-9)
    np.testing.assert_allclose(sigma, (lo ** (1 / 7) + np.arange(10) / 9 * (hi ** (1 / 7) - lo ** (1 / 7))) ** 7, rtol=1e-9)
    assert sampling_schedule(REPORT, 1, 'karras_window').gammas[0] == pytest.approx(1 / (1 + hi ** 2), rel=1e-12)
    short = NoiseSchedule.make('linear', 100)                                  # its noisiest level is sigma ~ 0.8 < 20
    ks = sampling_schedule(short, 6, 'karras_window')
    assert ks.gammas[-1] == pytest.approx(short.gammas[-1], rel=1e-12) and ks.gammas[0] == pytest.approx(1 / (1 + lo ** 2), rel=1e-12)
    assert (np.diff(ks.gammas) < 0).all()
    # the whole-range 'karras' levels reach beyond the window at both ends, and one level is the noisiest trained one
    full = np.sqrt((1 - sampling_schedule(REPORT, 10, 'karras').gammas) / sampling_schedule(REPORT, 10, 'karras').gammas)
    assert full[0] < lo and full[-1] > hi
    assert sampling_schedule(REPORT, 1, 'karras').gammas[0] == REPORT.gammas[-1]
    assert SAMPLER_SCHEDULES['dpmpp2m_sde'] == 'karras_window'
