"Properties of the noise-level sampler and the training loss (sr3lit.loss)."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sr3lit.loss import NOISE_LEVEL_METHODS, diffusion_loss, fit_denoiser, sample_noise_level
from sr3lit.schedules import NoiseSchedule

REPORT = NoiseSchedule.make('linear', 2000, 1e-6, 1e-2)


@given(st.sampled_from(['linear', 'quad', 'cosine', 'jsd', 'warmup10']), st.integers(1, 500), st.integers(1, 64),
       st.sampled_from(NOISE_LEVEL_METHODS), st.booleans(), st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_noise_level_lies_in_its_step_interval(name, T, B, method, one_t, seed):
    s = NoiseSchedule.make(name, T, 1e-4, 2e-2)
    t, nl = sample_noise_level(s, B, torch.Generator().manual_seed(seed), method, one_t_per_batch=one_t)
    assert t.shape == (B,) and nl.shape == (B,) and nl.dtype == torch.float64
    assert ((t >= 1) & (t <= T)).all()
    gamma, i = nl.numpy() ** 2, t.numpy() - 1
    assert (gamma >= s.gammas[i] * (1 - 1e-12)).all() and (gamma <= s.gammas_prev[i] * (1 + 1e-12)).all()
    if one_t: assert (t == t[0]).all()


def _exact_cdf(s, gamma, method):
    "F(gamma): each of the T intervals (gamma_t, gamma_{t-1}) holds mass 1/T, linear in gamma or in sqrt(gamma)."
    gamma = np.asarray(gamma)[:, None]
    lo, hi = s.gammas[None], s.gammas_prev[None]
    if method == 'sqrt_gamma': gamma, lo, hi = np.sqrt(gamma), np.sqrt(lo), np.sqrt(hi)
    return np.clip((gamma - lo) / (hi - lo), 0, 1).mean(1)


def _ks(samples, cdf):
    n = len(samples)
    return max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())


@pytest.mark.parametrize('method', NOISE_LEVEL_METHODS)
def test_noise_level_distribution_kolmogorov_smirnov(method):
    n = 20_000
    crit = 1.628 / math.sqrt(n)                                                    # 1% critical value
    coarse = NoiseSchedule.make('cosine', 8)
    other = 'gamma' if method == 'sqrt_gamma' else 'sqrt_gamma'
    for s in (NoiseSchedule.make('linear', 300, 1e-4, 2e-2), coarse):
        _, nl = sample_noise_level(s, n, torch.Generator().manual_seed(11), method)
        gamma = np.sort(nl.numpy() ** 2)
        assert _ks(gamma, _exact_cdf(s, gamma, method)) < crit
    # the test has power: on a coarse schedule the other method's CDF is rejected
    assert _ks(gamma, _exact_cdf(coarse, gamma, other)) > 2 * crit


def test_interval_means_differ_by_the_closed_form():
    s = NoiseSchedule.make('cosine', 6)
    a, b = np.sqrt(s.gammas), np.sqrt(s.gammas_prev)
    for method, expected in (('gamma', (a**2 + b**2) / 2), ('sqrt_gamma', (a**2 + a * b + b**2) / 3)):
        t, nl = sample_noise_level(s, 120_000, torch.Generator().manual_seed(3), method)
        for step in range(1, 7):
            g = nl[t == step] ** 2
            assert abs(g.mean().item() - expected[step - 1]) < 5 * g.std().item() / math.sqrt(len(g))


def test_sampler_is_reproducible_and_validates():
    a = sample_noise_level(REPORT, 8, torch.Generator().manual_seed(5))
    b = sample_noise_level(REPORT, 8, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match='method'): sample_noise_level(REPORT, 8, method='t')
    with pytest.raises(ValueError, match='batch_size'): sample_noise_level(REPORT, 0)


# one image of two pixels: y0 = (0.5, -0.5), eps = (1, -2), sqrt(gamma) = 0.8  ->  y_t = (1.0, -1.6)
Y0 = torch.tensor([[[[0.5, -0.5]]]], dtype=torch.float64)
EPS = torch.tensor([[[[1.0, -2.0]]]], dtype=torch.float64)
X = torch.tensor([[[[3.0, -3.0]]]], dtype=torch.float64)
NL = torch.tensor([0.8], dtype=torch.float64)
zero_model = lambda inp, nl: torch.zeros_like(inp[:, -1:])
yt_model = lambda inp, nl: inp[:, -1:]


@pytest.mark.parametrize('model,p,reduction,expected', [
    (zero_model, 1, 'mean', 1.5), (zero_model, 1, 'sum', 3.0), (zero_model, 2, 'mean', 2.5), (zero_model, 2, 'sum', 5.0),
    (yt_model, 1, 'mean', 0.2), (yt_model, 1, 'sum', 0.4), (yt_model, 2, 'mean', 0.08), (yt_model, 2, 'sum', 0.16)])
def test_loss_by_hand(model, p, reduction, expected):
    loss = diffusion_loss(model, X, Y0, REPORT, p, reduction, noise=EPS, noise_level=NL)
    assert loss.ndim == 0 and loss.item() == pytest.approx(expected, abs=1e-12)
    assert diffusion_loss(model, None, Y0, REPORT, p, reduction, noise=EPS, noise_level=NL).item() == pytest.approx(expected, abs=1e-12)


def test_loss_on_a_batch_against_numpy():
    g = torch.Generator().manual_seed(0)
    y0 = torch.rand(3, 2, 4, 4, dtype=torch.float64, generator=g) * 2 - 1
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64, generator=g) * 2 - 1
    eps = torch.randn(y0.shape, dtype=torch.float64, generator=g)
    nl = torch.tensor([0.1, 0.6, 0.9999], dtype=torch.float64)
    model = lambda inp, level: inp[:, :2] * 0.5 - inp[:, 2:] ** 2 + level.reshape(-1, 1, 1, 1)
    Y, Xn, E, S = y0.numpy(), x.numpy(), eps.numpy(), nl.numpy()
    for p in (1, 2):
        per_image = [(np.abs(Xn[i] * 0.5 - (S[i] * Y[i] + np.sqrt(1 - S[i]**2) * E[i]) ** 2 + S[i] - E[i]) ** p).sum()
                     for i in range(3)]
        assert diffusion_loss(model, x, y0, REPORT, p, 'sum', noise=eps, noise_level=nl).item() == pytest.approx(np.mean(per_image), rel=1e-12)
        assert diffusion_loss(model, x, y0, REPORT, p, noise=eps, noise_level=nl).item() == pytest.approx(np.mean(per_image) / 32, rel=1e-12)


def test_network_call_convention():
    seen = {}
    def model(inp, level):
        seen.update(inp=inp, level=level)
        return torch.zeros_like(inp[:, 3:])
    y0, x = torch.zeros(4, 3, 8, 8), torch.full((4, 3, 8, 8), 0.25)
    diffusion_loss(model, x, y0, REPORT, generator=torch.Generator().manual_seed(0))
    assert seen['inp'].shape == (4, 6, 8, 8) and torch.equal(seen['inp'][:, :3], x)       # cat([x_lr_up, y_t], 1)
    assert seen['level'].shape == (4,) and seen['level'].dtype == torch.float32           # sqrt(gamma), (B,)
    assert ((seen['level'] > 0) & (seen['level'] <= 1)).all()


def test_gradients_flow_and_generator_reproduces():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(6, 3, 3, padding=1)
    model = lambda inp, level: net(inp) * level.reshape(-1, 1, 1, 1)
    y0, x = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    l1 = diffusion_loss(model, x, y0, REPORT, generator=torch.Generator().manual_seed(1))
    l2 = diffusion_loss(model, x, y0, REPORT, generator=torch.Generator().manual_seed(1))
    assert l1.item() == l2.item()
    l1.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_loss_bad_input():
    with pytest.raises(ValueError, match='p must be 1 or 2'): diffusion_loss(zero_model, X, Y0, REPORT, p=3)
    with pytest.raises(ValueError, match='reduction'): diffusion_loss(zero_model, X, Y0, REPORT, reduction='none')
    with pytest.raises(ValueError, match='noise_level must have shape'):
        diffusion_loss(zero_model, X, Y0, REPORT, noise_level=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match='x_lr_up'): diffusion_loss(zero_model, torch.zeros(1, 1, 1, 3), Y0, REPORT)
    with pytest.raises(ValueError, match='model returned shape'):
        diffusion_loss(lambda inp, nl: inp, X, Y0, REPORT, noise=EPS, noise_level=NL)


class ConvDenoiser(torch.nn.Module):
    "A 3x3 convolution of cat([x_up, y_t]) that ignores the noise level: enough to learn something in a few steps."
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x, noise_level): return self.conv(x)


def test_fit_denoiser_is_reproducible_and_learns():
    "Algorithm 1's minimal loop: the same generator gives the same losses; the loss falls; mismatched pairs are refused."
    sched = NoiseSchedule.make('linear', 100, 1e-4, 2e-2)
    y0 = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    def run():
        torch.manual_seed(0)
        return fit_denoiser(ConvDenoiser(), y0, y0, sched, steps=60, lr=1e-2, batch_size=8, p=2, generator=torch.Generator().manual_seed(1))
    first, second = run(), run()
    assert first == second and len(first) == 60
    assert np.mean(first[-10:]) < np.mean(first[:10])
    with pytest.raises(ValueError, match='as many conditioning images'):
        fit_denoiser(ConvDenoiser(), y0[:3], y0, sched, steps=1)
