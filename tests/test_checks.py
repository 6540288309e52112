"The exercise checks (the harness sr3lit.checks; each check in its chapter's module): reference solutions pass, planted mistakes get their own specific messages."
import ast
import inspect
import json
import math
import re
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sr3lit import checks, forward, loss, metrics, posterior, sampling
from sr3lit.checks import CheckFailed, NotImplementedYet
from sr3lit.forward import per_sample, timestep_tensor
from sr3lit.schedules import NoiseSchedule


def recompiled(module, *names):
    """Copies of `module`'s functions `names` compiled from their source, as a teaching notebook's cells compile them:
    not sr3lit's own code, so the checks take them as answers (sr3lit's own functions are refused as delegation)."""
    ns = dict(vars(module))
    for n in names: exec(compile(textwrap.dedent(inspect.getsource(getattr(module, n))), f'<teaching {n}>', 'exec'), ns)
    return types.SimpleNamespace(**{n: ns[n] for n in names})

F = recompiled(forward, 'q_sample')
P = recompiled(posterior, 'posterior_coefficients', 'posterior_mean_variance')
L = recompiled(loss, 'sample_noise_level', 'diffusion_loss')
M = recompiled(metrics, 'psnr')
S = recompiled(sampling, 'p_sample_step')


def failure(check, fn) -> str:
    "The message of the CheckFailed that `check(fn)` raises (fails the test if it passes)."
    with pytest.raises(CheckFailed) as info: check(fn)
    return str(info.value)


def assert_distinct(messages: dict):
    "Different mistakes get different messages (compared on their first line, the diagnosis)."
    firsts = {k: m.splitlines()[0] for k, m in messages.items()}
    assert len(set(firsts.values())) == len(firsts), firsts


# ---------------------------------------------------------------- the reference solutions pass every check

@pytest.mark.parametrize('name', ['q_sample', 'posterior', 'sample_noise_level', 'loss', 'psnr', 'reverse_step'])
def test_reference_solutions_pass(name, capsys):
    check, solution = {
        'q_sample': (forward.check_q_sample, lambda: F.q_sample),
        'posterior': (posterior.check_posterior, lambda: P.posterior_mean_variance),
        'sample_noise_level': (loss.check_sample_noise_level, lambda: L.sample_noise_level),
        'loss': (loss.check_loss, lambda: L.diffusion_loss),
        'psnr': (metrics.check_psnr, lambda: M.psnr),
        'reverse_step': (sampling.check_reverse_step, lambda: S.p_sample_step),
    }[name]
    check(solution())
    out = capsys.readouterr().out
    assert out.startswith('✓ ') and 'passes' in out and 'checks' in out


@pytest.mark.parametrize('check, library', [(forward.check_q_sample, forward.q_sample), (posterior.check_posterior, posterior.posterior_mean_variance),
    (loss.check_sample_noise_level, loss.sample_noise_level), (loss.check_loss, loss.diffusion_loss), (metrics.check_psnr, metrics.psnr),
    (sampling.check_reverse_step, sampling.p_sample_step)])
def test_sr3lit_s_own_implementation_is_refused_as_delegation(check, library):
    with pytest.raises(checks.Delegated) as info: check(library)
    assert 'hands its work to sr3lit' in str(info.value)


# ---------------------------------------------------------------- exercise 1: q_sample

def q_wrong(signal, noise_coef):
    "A q_sample whose coefficients are signal(gamma) and noise_coef(gamma), gamma shaped (B,1,..,1) in float64."
    def q_sample(y0, gamma, noise=None):
        g = per_sample(gamma, y0)
        return signal(g).to(y0.dtype) * y0 + noise_coef(g).to(y0.dtype) * noise
    return q_sample


def test_q_sample_mistakes_are_named():
    messages = {
        'noise without sqrt': failure(forward.check_q_sample, q_wrong(torch.sqrt, lambda g: 1 - g)),
        'signal without sqrt': failure(forward.check_q_sample, q_wrong(lambda g: g, lambda g: (1 - g).sqrt())),
        'swapped': failure(forward.check_q_sample, q_wrong(lambda g: (1 - g).sqrt(), torch.sqrt)),
        'minus': failure(forward.check_q_sample, q_wrong(torch.sqrt, lambda g: -(1 - g).sqrt())),
        'one minus sqrt': failure(forward.check_q_sample, q_wrong(torch.sqrt, lambda g: 1 - g.sqrt())),
    }
    assert 'noise coefficient is missing a square root' in messages['noise without sqrt'] and 'eq. 6' in messages['noise without sqrt']
    assert 'coefficient of y0 is missing a square root' in messages['signal without sqrt']
    assert 'swapped' in messages['swapped']
    assert 'noise term has the wrong sign' in messages['minus']
    assert 'square root in the wrong place' in messages['one minus sqrt']
    assert_distinct(messages)
    assert all(m.startswith('q_sample: ') for m in messages.values())


def test_q_sample_broadcasting_precision_and_noise_mistakes():
    def last_axis(y0, gamma, noise=None):               # a (B,) gamma times (B, C, H, W): lines up with W
        g = torch.as_tensor(gamma, dtype=torch.float64)
        return g.sqrt().to(y0.dtype) * y0 + (1 - g).sqrt().to(y0.dtype) * noise

    def float32_gamma(y0, gamma, noise=None):           # 1 - gamma computed after rounding gamma to float32
        g = per_sample(gamma, y0).to(y0.dtype)
        return g.sqrt() * y0 + (1 - g).sqrt() * noise

    def fresh_noise(y0, gamma, noise=None):
        g = per_sample(gamma, y0)
        return g.sqrt().to(y0.dtype) * y0 + (1 - g).sqrt().to(y0.dtype) * torch.randn_like(y0)

    messages = {k: failure(forward.check_q_sample, f) for k, f in
                (('axis', last_axis), ('float32', float32_gamma), ('fresh', fresh_noise))}
    assert 'broadcast along the wrong axis' in messages['axis'] and '(B, 1, 1, 1)' in messages['axis']
    assert 'rounded to float32' in messages['float32']
    assert 'is not the `noise` argument' in messages['fresh']
    assert_distinct(messages)
    with torch.random.fork_rng():                       # whatever the fresh noise happens to be, the diagnosis is the same
        for seed in range(200):
            torch.manual_seed(seed)
            assert 'is not the `noise` argument' in failure(forward.check_q_sample, fresh_noise), seed


@pytest.mark.parametrize('n', [30, 50, 768])
def test_drawn_afresh_tells_fresh_noise_from_the_given_noise(n):
    gen = torch.Generator().manual_seed(n)
    draw = lambda: torch.randn(n, generator=gen, dtype=torch.float64)
    given = draw()
    assert all(checks.drawn_afresh(draw(), given) for _ in range(2000))      # misses: ~7 in a million at 30 values, fewer above
    with_nan = given.clone(); with_nan[0] = float('nan')
    for wrong in (given, -given, 0.5 * given, 1.3 * given, torch.zeros(n, dtype=torch.float64), 3 * draw(), with_nan):
        assert not checks.drawn_afresh(wrong, given)
    if n >= 500:                                        # the bounds narrow as n grows: here half the given noise is caught
        assert not any(checks.drawn_afresh(0.5 * given + 0.75 ** 0.5 * draw(), given) for _ in range(200))


def test_placeholder_missing_return_dtype_and_in_place_changes():
    def stub(y0, gamma, noise=None): raise NotImplementedError()
    with pytest.raises(NotImplementedYet) as info: forward.check_q_sample(stub)
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, AssertionError)
    assert 'q_sample is not implemented yet' in str(info.value) and 'raise NotImplementedError()' in str(info.value)

    def mean_variance(schedule, y0, yt, t): return posterior_coefficients(schedule, t)
    def posterior_coefficients(schedule, t): raise NotImplementedError()
    with pytest.raises(NotImplementedYet) as info: posterior.check_posterior(mean_variance)
    assert str(info.value).startswith('posterior_coefficients (which posterior_mean_variance calls) is not implemented yet')

    assert 'is the `return` missing?' in failure(forward.check_q_sample, lambda y0, gamma, noise=None: None)
    as_float64 = lambda y0, gamma, noise=None: F.q_sample(y0, gamma, noise).double()
    assert 'torch.float64 where torch.float32 is expected' in failure(forward.check_q_sample, as_float64)

    def in_place(y0, gamma, noise=None):
        result = F.q_sample(y0, gamma, noise)
        y0.zero_()
        return result
    assert 'changed its input `y0` in place' in failure(forward.check_q_sample, in_place)


def test_unknown_mistakes_get_the_location_and_a_hint():
    def off_in_one_image(y0, gamma, noise=None):
        out = F.q_sample(y0, gamma, noise).clone()
        out[-1, ..., 0] += 0.25                          # nothing in the catalogue does this
        return out
    message = failure(forward.check_q_sample, off_in_one_image)
    assert 'No typical mistake matches' in message and 'largest error 0.25' in message
    assert f'batch element' in message and 'eq. 6' in message and 'sqrt(1-gamma)*noise' not in message   # a hint, not the formula

    def crashes(y0, gamma, noise=None): raise KeyError('oops')
    message = failure(forward.check_q_sample, crashes)
    assert message.startswith('q_sample raised KeyError') and 'y0 (' in message


# ---------------------------------------------------------------- exercise 2: the posterior

def posterior_from(coefficients):
    "posterior_mean_variance around student-written coefficients(beta, alpha, gamma, gamma_prev) -> (c_yt, c_y0, var)."
    def posterior_mean_variance(schedule, y0, yt, t):
        t = timestep_tensor(schedule, t, yt.shape[0])
        terms = [torch.from_numpy(getattr(schedule, k))[t - 1] for k in ('betas', 'alphas', 'gammas', 'gammas_prev')]
        c_yt, c_y0, var = (per_sample(c, yt).to(yt.dtype) for c in coefficients(*terms))
        return c_yt * yt + c_y0 * y0, var
    return posterior_mean_variance


def test_posterior_mistakes_are_named():
    right_var = lambda b, a, g, gp: (1 - gp) / (1 - g) * b
    messages = {
        'report eq. 9': failure(posterior.check_posterior, posterior_from(
            lambda b, a, g, gp: (a.sqrt() * (1 - g) / (1 - g), g.sqrt() * b / (1 - g), right_var(b, a, g, gp)))),
        'alpha without sqrt': failure(posterior.check_posterior, posterior_from(
            lambda b, a, g, gp: (a * (1 - gp) / (1 - g), gp.sqrt() * b / (1 - g), right_var(b, a, g, gp)))),
        'beta as variance': failure(posterior.check_posterior, posterior_from(
            lambda b, a, g, gp: (a.sqrt() * (1 - gp) / (1 - g), gp.sqrt() * b / (1 - g), b))),
        'std as variance': failure(posterior.check_posterior, posterior_from(
            lambda b, a, g, gp: (a.sqrt() * (1 - gp) / (1 - g), gp.sqrt() * b / (1 - g), right_var(b, a, g, gp).sqrt()))),
    }
    assert "the report's eq. 9" in messages['report eq. 9'] and '(the mean)' in messages['report eq. 9']
    assert 'coefficient of y_t is missing a square root' in messages['alpha without sqrt']
    assert 'your variance is beta_t' in messages['beta as variance'] and '(the variance)' in messages['beta as variance']
    assert 'standard deviation' in messages['std as variance']
    assert_distinct(messages)


def test_posterior_index_and_shape_mistakes():
    def numpy_index_t(schedule, y0, yt, t):        # 1-based t used as a 0-based index: step t+1 (and t = T overflows)
        idx = timestep_tensor(schedule, t, yt.shape[0]).numpy()
        b, a, g, gp = (torch.from_numpy(getattr(schedule, k)[idx]) for k in ('betas', 'alphas', 'gammas', 'gammas_prev'))
        mean = per_sample(a.sqrt() * (1 - gp) / (1 - g), yt).to(yt.dtype) * yt + per_sample(gp.sqrt() * b / (1 - g), yt).to(yt.dtype) * y0
        return mean, per_sample((1 - gp) / (1 - g) * b, yt).to(yt.dtype)

    def flat_variance(schedule, y0, yt, t):
        mean, var = P.posterior_mean_variance(schedule, y0, yt, t)
        return mean, var.flatten().expand(yt.shape[0])

    off = failure(posterior.check_posterior, numpy_index_t)
    assert 'posterior of step t+1: t is off by one' in off
    shape = failure(posterior.check_posterior, flat_variance)
    assert 'your variance has shape (B,)' in shape and '(B, 1, 1, 1)' in shape
    assert 'is the `return` missing?' in failure(posterior.check_posterior, lambda s, y0, yt, t: None)
    only_mean = lambda s, y0, yt, t: P.posterior_mean_variance(s, y0, yt, t)[0]
    assert 'returned a Tensor' in failure(posterior.check_posterior, only_mean) and 'pair (mean, variance)' in failure(posterior.check_posterior, only_mean)


# ---------------------------------------------------------------- exercise 3: sample_noise_level

def sampler(t_low=1, t_stop=1, take_root=True, use_method=True, use_generator=True):
    "A sample_noise_level written from the definition, with switches for mistakes."
    def sample_noise_level(schedule, batch_size, generator=None, method='gamma', one_t_per_batch=False, device=None):
        gen = generator if use_generator else None
        t = torch.randint(t_low, schedule.T + t_stop, (1 if one_t_per_batch else batch_size,), generator=gen).expand(batch_size).clone()
        g = torch.from_numpy(np.append(schedule.gammas, np.nan))[t.clamp(min=1) - 1]          # gamma_t (nan past T)
        gp = torch.from_numpy(np.append(1.0, schedule.gammas))[t.clamp(min=0)]               # gamma_{t-1}, nonsense at t=0
        gp = torch.where(t >= 1, torch.from_numpy(schedule.gammas_prev)[t.clamp(1, schedule.T) - 1], gp)
        u = torch.rand(batch_size, generator=gen, dtype=torch.float64)
        if method == 'gamma' or not use_method: gamma = g + u * (gp - g)
        else: gamma = (g.sqrt() + u * (gp.sqrt() - g.sqrt())) ** 2
        return t, (gamma.sqrt() if take_root else gamma)
    return sample_noise_level


def test_sampler_written_from_the_definition_passes():
    loss.check_sample_noise_level(sampler())


def test_sample_noise_level_mistakes_are_named():
    messages = {
        't from 0': failure(loss.check_sample_noise_level, sampler(t_low=0)),
        'randint(1, T)': failure(loss.check_sample_noise_level, sampler(t_stop=0)),
        'gamma not sqrt': failure(loss.check_sample_noise_level, sampler(take_root=False)),
        'method ignored': failure(loss.check_sample_noise_level, sampler(use_method=False)),
        'generator ignored': failure(loss.check_sample_noise_level, sampler(use_generator=False)),
    }
    assert 't = 0 is drawn' in messages['t from 0']
    assert 't never reaches T' in messages['randint(1, T)']
    assert 'gamma itself, not its square root' in messages['gamma not sqrt']
    assert "method='sqrt_gamma'" in messages['method ignored'] and 'uniform in gamma' in messages['method ignored']
    assert 'generator' in messages['generator ignored'] and 'seeded alike' in messages['generator ignored']
    assert_distinct(messages)


def test_sample_noise_level_structure_mistakes():
    def float32_levels(schedule, batch_size, generator=None, method='gamma', one_t_per_batch=False, device=None):
        t, level = L.sample_noise_level(schedule, batch_size, generator, method, one_t_per_batch)
        return t, level.float()
    assert 'it must be float64' in failure(loss.check_sample_noise_level, float32_levels)
    one_value = lambda schedule, batch_size, generator=None, **kw: L.sample_noise_level(schedule, batch_size, generator, **kw)[1]
    assert 'pair of tensors (t, noise_level)' in failure(loss.check_sample_noise_level, one_value)


# ---------------------------------------------------------------- exercise 4: the loss

def loss_from(error, reduce_mean=lambda e: e.mean(), net_level=lambda s: s, order=lambda x, y: [x, y], finish=lambda v: v,
              cast=True):
    "diffusion_loss (noise and noise_level given) with switches for mistakes."
    def diffusion_loss(model, x_lr_up, y0, schedule, p=1, reduction='mean', noise=None, noise_level=None, **kw):
        y_noisy = F.q_sample(y0, noise_level ** 2, noise)
        inp = y_noisy if x_lr_up is None else torch.cat(order(x_lr_up, y_noisy), dim=1)
        level = net_level(noise_level)
        eps_hat = model(inp, level.to(y0.dtype) if cast else level)
        e = error(eps_hat - noise, p)
        return finish(reduce_mean(e) if reduction == 'mean' else e.flatten(1).sum(1).mean())
    return diffusion_loss


def test_loss_written_from_the_definition_passes():
    loss.check_loss(loss_from(lambda d, p: d.abs() ** p))


def test_loss_mistakes_are_named():
    p_error = lambda d, p: d.abs() ** p
    messages = {
        'L2 for L1': failure(loss.check_loss, loss_from(lambda d, p: d ** 2)),
        'sum for mean': failure(loss.check_loss, loss_from(p_error, reduce_mean=lambda e: e.sum())),
        'gamma to the network': failure(loss.check_loss, loss_from(p_error, net_level=lambda s: s ** 2)),
        'inputs swapped': failure(loss.check_loss, loss_from(p_error, order=lambda x, y: [y, x])),
        'per image': failure(loss.check_loss, loss_from(p_error, reduce_mean=lambda e: e.flatten(1).mean(1))),
    }
    assert 'squared error where p=1 asks for the absolute error' in messages['L2 for L1']
    assert "a sum where reduction='mean'" in messages['sum for mean']
    assert 'given gamma, the square of its noise level' in messages['gamma to the network']
    assert 'cat([y_noisy, x_lr_up])' in messages['inputs swapped']
    assert 'not reduced to one number' in messages['per image']
    assert_distinct(messages)


def test_loss_call_and_autograd_mistakes():
    p_error = lambda d, p: d.abs() ** p
    assert 'noise level of shape' in failure(loss.check_loss, loss_from(p_error, net_level=lambda s: s.reshape(-1, 1, 1, 1)))
    assert 'cast it with .to(y0.dtype)' in failure(loss.check_loss, loss_from(p_error, cast=False))
    assert '.item() called' in failure(loss.check_loss, loss_from(p_error, finish=lambda v: v.item()))
    assert 'out.requires_grad is False' in failure(loss.check_loss, loss_from(p_error, finish=lambda v: v.detach()))


# ---------------------------------------------------------------- exercise 5: one reverse step

def step_from(noise_at_last=False, clip=True, variance_kind=None, std=True, index_shift=0):
    "One reverse step written from the schedule's arrays, with switches for mistakes."
    def p_sample_step(model, schedule, x_up, y_t, t, noise=None, clip_denoised=True, variance='posterior', generator=None):
        B = y_t.shape[0]
        t = timestep_tensor(schedule, t, B).expand(B)
        idx = (t - 1 + index_shift).numpy()
        b, a, g, gp = (torch.from_numpy(getattr(schedule, k)[idx]).reshape(-1, 1, 1, 1) for k in ('betas', 'alphas', 'gammas', 'gammas_prev'))
        eps = model(torch.cat([x_up, y_t], 1), g.flatten().sqrt().to(y_t.dtype)).double()
        y0_hat = (y_t.double() - (1 - g).sqrt() * eps) / g.sqrt()
        if clip_denoised and clip: y0_hat = y0_hat.clamp(-1, 1)
        mean = a.sqrt() * (1 - gp) / (1 - g) * y_t.double() + gp.sqrt() * b / (1 - g) * y0_hat
        var = b if (variance_kind or variance) == 'beta' else (1 - gp) / (1 - g) * b
        adds = torch.ones_like(g) if noise_at_last else (t > 1).double().reshape(-1, 1, 1, 1)
        return (mean + adds * (var.sqrt() if std else var) * noise.double()).to(y_t.dtype)
    return p_sample_step


def test_reverse_step_written_from_the_definition_passes():
    sampling.check_reverse_step(step_from())


def test_reverse_step_mistakes_are_named():
    messages = {
        'noise at t=1': failure(sampling.check_reverse_step, step_from(noise_at_last=True)),
        'no clipping': failure(sampling.check_reverse_step, step_from(clip=False)),
        'beta variance': failure(sampling.check_reverse_step, step_from(variance_kind='beta')),
        'variance not std': failure(sampling.check_reverse_step, step_from(std=False)),
        't off by one': failure(sampling.check_reverse_step, step_from(index_shift=1)),
    }
    assert 'adds noise at t = 1' in messages['noise at t=1']
    assert 'does not clip y0_hat' in messages['no clipping']
    assert "variance beta_t where variance='posterior'" in messages['beta variance']
    assert 'multiplies the noise by the variance' in messages['variance not std']
    assert 'terms of step t+1' in messages['t off by one']
    assert_distinct(messages)


def test_reverse_step_with_fresh_noise_is_named_whatever_the_noise():
    step = step_from()
    def fresh(model, schedule, x_up, y_t, t, noise=None, **kw):
        return step(model, schedule, x_up, y_t, t, noise=torch.randn_like(y_t), **kw)
    with torch.random.fork_rng():
        for seed in range(30):
            torch.manual_seed(seed)
            assert 'is not the `noise` argument' in failure(sampling.check_reverse_step, fresh), seed


# ---------------------------------------------------------------- exercise 6: PSNR

def pixels(x, rounding=torch.round, clip=True):
    x = x.double()
    return rounding(((x.clamp(-1, 1) if clip else x) + 1) * 127.5)


def psnr_from(to_pixels=pixels, log=torch.log10, per_image=True):
    def psnr(sr, hr):
        mse = ((to_pixels(sr) - to_pixels(hr)) ** 2).flatten(1).mean(1)
        value = 10 * log(255.0 ** 2 / mse)
        return value if per_image else value.mean()
    return psnr


def test_psnr_written_from_the_definition_passes():
    metrics.check_psnr(psnr_from())


def test_psnr_mistakes_are_named():
    messages = {
        'data range 1 on [-1, 1]': failure(metrics.check_psnr, lambda sr, hr: 10 * torch.log10(1 / ((sr - hr).double() ** 2).flatten(1).mean(1))),
        'data range 2 on [-1, 1]': failure(metrics.check_psnr, lambda sr, hr: 10 * torch.log10(4 / ((sr - hr).double() ** 2).flatten(1).mean(1))),
        'batch mean': failure(metrics.check_psnr, psnr_from(per_image=False)),
        'natural log': failure(metrics.check_psnr, psnr_from(log=torch.log)),
        'truncation': failure(metrics.check_psnr, psnr_from(to_pixels=lambda x: pixels(x, torch.floor))),
        'no clipping': failure(metrics.check_psnr, psnr_from(to_pixels=lambda x: pixels(x, clip=False))),
    }
    assert '6.02 dB too low' in messages['data range 1 on [-1, 1]']
    assert 'data range 2' in messages['data range 2 on [-1, 1]'] and 'clipped and rounded' in messages['data range 2 on [-1, 1]']
    assert 'one number for the batch' in messages['batch mean']
    assert 'natural logarithm' in messages['natural log']
    assert 'truncated' in messages['truncation']
    assert 'not clipped' in messages['no clipping']
    assert_distinct(messages)


def test_psnr_identical_images_must_be_infinite():
    eps_psnr = lambda sr, hr: 10 * torch.log10(255.0 ** 2 / (((pixels(sr) - pixels(hr)) ** 2).flatten(1).mean(1) + 1e-10))
    assert 'identical images must give +inf' in failure(metrics.check_psnr, eps_psnr)


# ---------------------------------------------------------------- the machinery

def test_catalogue_power_finds_uncaught_and_confused_mistakes():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    case = checks.Case('x', (x,), expected=x, variants={'same': x.clone(), 'double': 2 * x, 'twice': x + x, 'zero': 0 * x})
    mistakes = [checks.Mistake(k, k) for k in ('same', 'double', 'twice', 'zero')]
    power = checks.catalogue_power([case], mistakes)
    assert power == {'uncaught': ['same'], 'confused': [('double', 'twice')]}


def test_a_mistake_is_named_only_if_it_explains_every_failing_case():
    cases = [checks.Case(f'case {k}', (torch.tensor([float(k)]),), expected=torch.tensor([float(k)], dtype=torch.float64),
                         variants={'plus_one': torch.tensor([k + 1.0], dtype=torch.float64)}) for k in (1, 2)]
    mistakes = [checks.Mistake('plus_one', 'adds one')]
    # wrong in both cases but +1 only in the first: not explained by the mistake
    with pytest.raises(CheckFailed) as info:
        checks.run_check('f', lambda x: x.double() + x.double(), cases, mistakes, hint='H')
    assert 'adds one' not in str(info.value) and 'No typical mistake matches' in str(info.value)
    with pytest.raises(CheckFailed) as info:
        checks.run_check('f', lambda x: x.double() + 1, cases, mistakes, hint='H')
    assert str(info.value).startswith('f: adds one') and '2 of 2 test cases fail' in str(info.value)


# ---------------------------------------------------------------- hints, not formulas

# The functions whose string literals are the checks' messages and hints (besides the catalogues' Mistake messages).
CHECK_CODE = {
    'forward': ('check_q_sample',),
    'posterior': ('_pair_part', 'check_posterior'),
    'loss': ('_draw', '_step_counts_diagnosis', '_interval_diagnosis', '_position_diagnosis', '_check_noise_level_draws',
             '_ProbeNet.forward', '_scalar', 'check_loss'),
    'metrics': ('check_psnr',),
    'sampling': ('_StepProbe.forward', 'check_reverse_step'),
    'checks': ('call_exercise', '_watched_call', '_diagnose', 'run_check'),
}
CATALOGUES = {'forward': ['Q_SAMPLE_MISTAKES'], 'posterior': ['POSTERIOR_MEAN_MISTAKES', 'POSTERIOR_VARIANCE_MISTAKES'],
              'loss': ['LOSS_MISTAKES'], 'metrics': ['PSNR_MISTAKES'], 'sampling': ['REVERSE_STEP_MISTAKES'], 'checks': []}

# The solutions' formulas, as a message would write them (matched without whitespace, in lower case).
FORMULAS = {
    'q_sample, eq. 6': [r"sqrt\(gamma(_t)?\)\*y_?0", r"sqrt\(1-gamma(_t)?\)"],
    'the posterior, eq. 9-10': [r"\(1-gamma_\{t-1\}\)/\(1-gamma_t\)", r"sqrt\(alpha_t\)\*\(1-gamma", r"sqrt\(gamma_\{t-1\}\)\*(beta|y)"],
    'sample_noise_level': [r"randint\(1,t\+1", r"low\+u\*\(high-low\)", r"(return|is|level)sqrt\(gamma", r"gammain\(gamma_t,gamma_\{t-1\}\)"],
    'the loss, eq. 13': [r"\|eps_hat-noise\|", r"\(eps_hat-noise\)\*\*2", r"noise_level\*\*2", r"error\.(flatten\(1\)\.sum\(1\)\.)?mean\(\)",
                         r"cat\(\[x_lr_up,y_noisy\]"],
    'psnr': [r"10\*log10\(", r"log10\(255", r"255\*\*2/", r"\+1\)\*127\.5", r"peak255"],
    'the reverse step, eq. 11 and Algorithm 2': [r"1/sqrt\(alpha", r"y_t-beta_t/sqrt\(1-gamma_t\)", r"/sqrt\(gamma_t\)", r"cat\(\[x_up,y_t\]",
                                                  r"mean\+sigma_t\*noise", r"sqrt\(variance\)", r"sigma_t\^2=beta"],
}
# each pattern must recognise one of these: the answers as a careless message would spell them out
ANSWERS = ["sqrt(gamma)*y0 + sqrt(1-gamma)*noise", "sqrt(alpha_t)*(1-gamma_{t-1})/(1-gamma_t)", "sqrt(gamma_{t-1})*beta_t/(1-gamma_t)",
           "torch.randint(1, T + 1, ...)", "put gamma at low + u * (high - low)", "return sqrt(gamma)",
           "|eps_hat - noise|", "(eps_hat - noise)**2", "q_sample(y0, noise_level**2, noise)", "error.flatten(1).sum(1).mean()",
           "cat([x_lr_up, y_noisy], dim=1)", "10*log10(255**2/MSE)", "20*log10(255/sqrt(MSE))", "round((clip(x, -1, 1) + 1) * 127.5)",
           "8-bit pixels, peak 255", "1/sqrt(alpha_t)*(y_t - beta_t/sqrt(1-gamma_t)*eps)", "(y_t - sqrt(1-gamma_t)*eps)/sqrt(gamma_t)",
           "cat([x_up, y_t], dim=1)", "y_{t-1} = mean + sigma_t*noise", "sqrt(variance)", "with gamma in (gamma_t, gamma_{t-1})",
           "sigma_t^2 = beta tilde_t"]


def _text(node) -> str:
    "A string literal, or an f-string with its fields as {}."
    if isinstance(node, ast.Constant): return node.value
    return ''.join(v.value if isinstance(v, ast.Constant) else '{}' for v in node.values)


def check_messages(source: str, functions, catalogues) -> list[str]:
    """Every message a check can print, from a module's `source`: the messages of the `Mistake(...)` entries of the
    `catalogues` (list names) and the string literals (not docstrings) of the `functions` ('name' or 'Class.name')."""
    tree, found = ast.parse(source), []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) in catalogues for t in node.targets):
            for call in node.value.elts:
                assert call.func.id == 'Mistake'
                found.append(_text(call.args[1]))
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    defs |= {f'{c.name}.{n.name}': n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body if isinstance(n, ast.FunctionDef)}
    for name in functions:
        fn = defs[name]
        docstring = fn.body[0].value if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else None
        inner = {id(v) for n in ast.walk(fn) if isinstance(n, ast.JoinedStr) for v in n.values}
        found += [_text(n) for n in ast.walk(fn) if n is not docstring and id(n) not in inner
                  and (isinstance(n, ast.JoinedStr) or (isinstance(n, ast.Constant) and isinstance(n.value, str)))]
    return found


def formulas_in(message: str) -> list[str]:
    "The FORMULAS patterns that `message` contains."
    flat = ''.join(message.split()).lower()
    return [p for patterns in FORMULAS.values() for p in patterns if re.search(p, flat)]


def test_the_formula_patterns_recognise_the_answers():
    for patterns in FORMULAS.values():
        for p in patterns: assert any(re.search(p, ''.join(a.split()).lower()) for a in ANSWERS), p


@pytest.mark.parametrize('name', list(CHECK_CODE))
def test_check_messages_give_hints_not_formulas(name):
    module = {'forward': forward, 'posterior': posterior, 'loss': loss, 'metrics': metrics, 'sampling': sampling, 'checks': checks}[name]
    messages = check_messages(inspect.getsource(module), CHECK_CODE[name], CATALOGUES[name])
    entries = sum(len(getattr(module, c)) for c in CATALOGUES[name])
    assert len(messages) >= entries + 3                      # every catalogue entry is read, and the generic messages too
    given_away = {m: formulas_in(m) for m in messages if formulas_in(m)}
    assert not given_away, given_away


def test_q_sample_prose_gives_no_formula():
    "Chapter 01's description of its check names the mistakes without writing the answer or a wrong formula next to it."
    nb = json.loads((Path(__file__).parents[1] / 'nbs' / '01_forward.ipynb').read_text())
    cell = next(''.join(c['source']) for c in nb['cells'] if ''.join(c['source']).startswith('### The check of `q_sample`'))
    assert r'\sqrt{1-\gamma}' not in cell and r'\sqrt\gamma\,y_0' not in cell and r'\sqrt{\gamma}\,y_0' not in cell


# ---------------------------------------------------------------- the student versions: no formula in prose or docstrings

NBS = Path(__file__).parents[1] / 'nbs'
EXERCISE_CHAPTERS = ['01_forward.ipynb', '02_posterior.ipynb', '04_loss.ipynb', '08_metrics.ipynb', '09_sampling.ipynb']

# The same answers as the documentation's LaTeX writes them (matched without whitespace, in lower case).
LATEX_FORMULAS = {
    'q_sample, eq. 6': [r"\\sqrt\{?1-\\gamma(_t)?\}?(\\,)?(z|\\epsilon|noise)", r"\\sqrt\{?\\gamma(_t)?\}?(\\,)?y_0\+"],
    'the posterior, eq. 9-10': [r"\\frac\{\\sqrt\{\\alpha_t\}\(1-\\gamma_\{t-1\}\)\}", r"\\frac\{\\sqrt\{\\gamma_\{t-1\}\}\\beta_t\}",
                                r"\\frac\{1-\\gamma_\{t-1\}\}\{1-\\gamma_t\}\\beta_t"],
    'sample_noise_level': [r"\\simu\\\{1", r"\\simu\((\\sqrt\{)?\\gamma_t", r"w=\((\\sqrt\{?)?\\gamma"],
    'the loss, eq. 13': [r"\|\\hat\\epsilon-\\epsilon\|", r"\(\\hat\\epsilon-\\epsilon\)\^2"],
    'psnr': [r"10\\log_\{?10\}?", r"255\^2/", r"127\.5(\\,)?\((\\mathrm\{)?clip"],
    'the reverse step, eq. 11-12 and Algorithm 2': [r"\\haty_0=\(y_t-", r"/\\sqrt\{\\gamma_t\}", r"\\sigma_t\^2=\\tilde\\beta_t",
                                                     r"1/\\sqrt\{\\alpha_t\}", r"\\frac\{1\}\{\\sqrt\{\\alpha_t\}\}"],
}
LATEX_ANSWERS = [r"y_t = \sqrt{\gamma_t}\,y_0 + \sqrt{1-\gamma_t}\,z", r"$\frac{\sqrt{\alpha_t}(1-\gamma_{t-1})}{1-\gamma_t}$",
                 r"$\frac{\sqrt{\gamma_{t-1}}\beta_t}{1-\gamma_t}$", r"$\tilde\beta_t = \frac{1-\gamma_{t-1}}{1-\gamma_t}\beta_t$",
                 r"$t \sim U\{1, \dots, T\}$", r"$\gamma \sim U(\gamma_t, \gamma_{t-1})$", r"$\sqrt\gamma \sim U(\sqrt{\gamma_t}, \sqrt{\gamma_{t-1}})$",
                 r"$w = (\gamma - \gamma_t)/(\gamma_{t-1} - \gamma_t)$", r"$|\hat\epsilon - \epsilon|^p$", r"$(\hat\epsilon - \epsilon)^2$",
                 r"$10\log_{10}\big(255^2/\mathrm{MSE}\big)$", r"$\mathrm{round}\big(127.5\,(\mathrm{clip}(x, -1, 1) + 1)\big)$",
                 r"$\hat y_0 = (y_t - \sqrt{1-\gamma_t}\,\hat\epsilon)/\sqrt{\gamma_t}$", r"$\sigma_t^2 = \tilde\beta_t$",
                 r"scaled by $1/\sqrt{\alpha_t}$", r"$\frac{1}{\sqrt{\alpha_t}}\big(y_t - \dots\big)$"]


def all_formulas_in(text: str) -> list[str]:
    "The FORMULAS and LATEX_FORMULAS patterns that `text` contains."
    flat = ''.join(text.split()).lower()
    return formulas_in(text) + [p for patterns in LATEX_FORMULAS.values() for p in patterns if re.search(p, flat)]


def test_the_latex_patterns_recognise_the_answers():
    for patterns in LATEX_FORMULAS.values():
        for p in patterns: assert any(re.search(p, ''.join(a.split()).lower()) for a in LATEX_ANSWERS), p


def exercise_prose_and_docstrings(nb: dict) -> dict[str, str]:
    """What a student version says about its exercises: the '**Exercise.**' and '### The check of' Markdown cells, and
    the docstrings of the functions left to write (those whose body raises the stub's NotImplementedError)."""
    found = {}
    for cell in nb['cells']:
        text = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown' and text.startswith(('**Exercise.**', '### The check of')): found[text.split('\n')[0]] = text
        if cell['cell_type'] != 'code' or 'raise NotImplementedError()' not in text: continue
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, ast.FunctionDef) and any(isinstance(n, ast.Raise) and 'NotImplementedError' in ast.dump(n) for n in ast.walk(fn)):
                found[f'docstring of {fn.name}'] = ast.get_docstring(fn) or ''
    return found


@pytest.mark.parametrize('chapter', EXERCISE_CHAPTERS)
def test_student_versions_describe_exercises_and_checks_without_formulas(chapter):
    """In the student version (chapter 18), the exercise's description, its check's description and the docstrings of the
    functions to write say what to compute, not the formula: the teaching version keeps those in teacher-only regions."""
    from sr3lit.assignment import student_notebook
    student, _ = student_notebook(json.loads((NBS / chapter).read_text()), chapter)
    texts = exercise_prose_and_docstrings(student)
    assert sum(k.startswith('### The check of') for k in texts) >= 1 and sum(k.startswith('docstring of') for k in texts) >= 1
    given_away = {k: all_formulas_in(t) for k, t in texts.items() if all_formulas_in(t)}
    assert not given_away, given_away
    # the teaching version still has them, for the teacher (except chapter 01, whose check prose never had one)
    teaching = exercise_prose_and_docstrings(json.loads((NBS / chapter).read_text()))
    assert chapter == '01_forward.ipynb' or any(all_formulas_in(t) for k, t in teaching.items() if k.startswith('### The check of'))
