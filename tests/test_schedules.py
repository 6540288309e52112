"Properties of the beta schedules and of NoiseSchedule (sr3lit.schedules)."
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sr3lit.schedules import BETA_SCHEDULES, NoiseSchedule, make_beta_schedule

schedules = st.sampled_from(BETA_SCHEDULES)
lengths = st.integers(min_value=2, max_value=3000)


@given(schedules, lengths)
def test_betas_float64_length_and_range(name, n):
    b = make_beta_schedule(name, n)
    assert b.dtype == np.float64 and b.shape == (n,)
    assert ((b > 0) & (b <= 1)).all()


@given(schedules, lengths)
def test_gammas_strictly_decrease_from_one(name, n):
    s = NoiseSchedule(make_beta_schedule(name, n))
    assert s.T == n
    assert 0 <= s.gammas[-1] < s.gammas[0] < 1
    assert (np.diff(s.gammas) < 0).all()
    assert s.gammas_prev[0] == 1.0 and (s.gammas_prev[1:] == s.gammas[:-1]).all()


def test_gamma_is_the_product_of_alphas():
    s = NoiseSchedule.make('quad', 300, 1e-4, 2e-2)
    for t in (1, 2, 150, 300):
        assert s.gammas[t - 1] == pytest.approx(math.prod(1 - s.betas[:t]), rel=1e-12)


@given(st.sampled_from(['linear', 'quad', 'cosine', 'warmup10']), st.integers(2, 2000), st.data())
@settings(max_examples=60)
def test_respace_is_a_subsequence_keeping_gamma_T(name, T, data):
    base = NoiseSchedule(make_beta_schedule(name, T))
    n = data.draw(st.integers(1, T))
    r = base.respace(n)
    assert r.T == n
    assert r.gammas[-1] == base.gammas[-1]                      # gamma_T kept exactly
    idx = np.searchsorted(-base.gammas, -r.gammas)              # base.gammas decreasing
    assert (base.gammas[idx] == r.gammas).all()                 # every kept gamma is one of the originals
    assert (np.diff(idx) > 0).all()                             # in order: a subsequence
    assert (r.timesteps == idx + 1).all()
    # 1 - beta loses digits when beta is near 1 (a factor of 3.8e-7 carries a relative error of eps/3.8e-7):
    # the bound is the float64 rounding of each factor, relative to its size, summed over the product
    bound = 4 * np.finfo(np.float64).eps * np.sum(1 / (1 - r.betas))
    assert np.allclose(np.cumprod(1 - r.betas), r.gammas, rtol=bound, atol=0)


def test_rediscretize_keeps_the_beta_range_but_not_gamma_T():
    base = NoiseSchedule.make('linear', 2000, 1e-6, 1e-2)
    r = base.rediscretize(50)
    assert r.betas[0] == pytest.approx(1e-6) and r.betas[-1] == pytest.approx(1e-2)
    # the sum of betas shrinks with n, so gamma_T = prod(1 - beta) grows: ~exp(-n * mean(beta))
    assert r.gammas[-1] == pytest.approx(math.exp(np.log1p(-r.betas).sum()), rel=1e-12)
    assert r.gammas[-1] > 0.75 and base.gammas[-1] < 1e-4


def test_at_indexes_one_based_and_broadcasts():
    s = NoiseSchedule.make('linear', 10, 0.01, 0.2)
    like = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    g = s.at('gammas', torch.tensor([1, 10]), like)
    assert g.shape == (2, 1, 1, 1) and g.dtype == torch.float64
    assert g[0].item() == s.gammas[0] and g[1].item() == s.gammas[9]
    assert s.at('betas', 3).item() == s.betas[2]
    with pytest.raises(IndexError): s.at('gammas', 11)
    with pytest.raises(IndexError): s.at('gammas', 0)


def test_bad_input_errors():
    with pytest.raises(ValueError, match='unknown beta schedule'): make_beta_schedule('cubic', 10)
    with pytest.raises(ValueError): make_beta_schedule('linear', 0)
    with pytest.raises(ValueError): NoiseSchedule([0.1, 0.0])
    with pytest.raises(ValueError): NoiseSchedule.make('linear', 10).respace(11)
