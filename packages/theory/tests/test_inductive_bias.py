"""Inductive bias: exact error laws of interpolating hypotheses and their lower tails."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from torchloom.theory import (
    GeneralizedChi2,
    fit_scaled_noncentral_chi2,
    inductive_bias_bits,
    interpolating_error_distribution,
    interpolating_hypothesis_errors,
)

F64 = torch.float64


def _task(d: int = 6, n: int = 20, m: int = 300, p: int = 150):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n + m, d, generator=g, dtype=F64)
    y = torch.sin(2 * x[:, 0])
    w = torch.randn(d, p, generator=g, dtype=F64) / math.sqrt(d)
    phi = torch.relu(x @ w + 0.3) * math.sqrt(2)
    return phi[:n], y[:n], phi[n:], y[n:]


@pytest.mark.parametrize("x", [0.12, 0.3, 1.0, 3.0, 6.0])
def test_saddlepoint_matches_scipy_noncentral_chi2(x: float) -> None:
    # Equal weights make the generalised chi-squared an exact scaled non-central chi-squared.
    q = GeneralizedChi2(torch.full((10,), 0.3, dtype=F64), torch.full((10,), 0.5, dtype=F64), 0.1)
    ref = float(stats.ncx2.logcdf((x - 0.1) / 0.3, 10, 10 * 0.25))
    assert q.logcdf(x) == pytest.approx(ref, rel=2e-3, abs=2e-3)


def test_saddlepoint_tail_matches_monte_carlo() -> None:
    dist = interpolating_error_distribution(*_task(), scale=2.0)
    g = torch.Generator().manual_seed(0)
    big = torch.cat([dist.sample(100_000, g) for _ in range(3)])
    for q in (1e-2, 1e-3):
        eps = float(big.kthvalue(int(q * big.numel())).values)
        # Monte-Carlo noise of the 1e-3 quantile from 3e5 samples is ~ +-0.1 bits.
        assert inductive_bias_bits(dist, eps) == pytest.approx(-math.log2(q), abs=0.25)
    assert inductive_bias_bits(dist, dist.offset * 0.999) == math.inf


def test_error_law_matches_sampled_hypotheses() -> None:
    task = _task()
    dist = interpolating_error_distribution(*task, scale=2.0)
    e = interpolating_hypothesis_errors(
        *task, 20000, scale=2.0, generator=torch.Generator().manual_seed(2)
    )
    se_mean = math.sqrt(dist.cumulant(2) / e.numel())
    assert float(e.mean()) == pytest.approx(dist.mean(), abs=5 * se_mean)
    assert float(e.var()) == pytest.approx(dist.cumulant(2), rel=0.05)
    assert float(e.min()) >= dist.offset - 1e-12
    # Kolmogorov-Smirnov between the two samplers.
    other = dist.sample(20000, torch.Generator().manual_seed(3))
    assert stats.ks_2samp(e.numpy(), other.numpy()).pvalue > 1e-3


def test_moment_fit_recovers_noncentral_chi2() -> None:
    g = torch.Generator().manual_seed(4)
    q = GeneralizedChi2(torch.full((8,), 0.5, dtype=F64), torch.full((8,), 1.0, dtype=F64), 0.0)
    fit = fit_scaled_noncentral_chi2(q.sample(200000, g))
    assert fit.scale == pytest.approx(0.5, rel=0.1)
    assert fit.df + fit.nc == pytest.approx(16.0, rel=0.05)
    assert fit.mean() == pytest.approx(q.mean(), rel=0.01)


def test_bad_inputs() -> None:
    ft, yt, fx, yx = _task()
    with pytest.raises(ValueError, match="p > n"):
        interpolating_error_distribution(ft[:, :10], yt, fx[:, :10], yx)
    with pytest.raises(ValueError, match="features_test"):
        interpolating_error_distribution(ft, yt, fx[:, :5], yx)
    with pytest.raises(ValueError, match="epsilon"):
        inductive_bias_bits(interpolating_error_distribution(ft, yt, fx, yx), -1.0)
    with pytest.raises(ValueError, match="floor"):
        fit_scaled_noncentral_chi2(torch.ones(5, dtype=F64), floor=2.0)
