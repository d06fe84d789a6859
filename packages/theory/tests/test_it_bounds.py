"""Estimators, contraction coefficients and layer-wise bounds of ``it_bounds``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats
from torch import nn

from torchloom.theory.it_bounds import (
    gaussian_kl,
    gaussian_mixture_kl,
    gaussian_w2,
    knn_kl_divergence,
    layerwise_bounds,
    remaining_lipschitz,
    sdpi_dropconnect,
    sdpi_dropout,
    sdpi_gaussian,
    wasserstein1,
)

F64 = torch.float64


def test_wasserstein1_brute_force_and_1d() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    cost = torch.cdist(x, y)
    best = min(
        float(cost[torch.arange(6), torch.tensor(p)].mean())
        for p in itertools.permutations(range(6))
    )
    assert wasserstein1(x, y) == pytest.approx(best)
    a, b = torch.randn(50, generator=g, dtype=F64), torch.randn(50, generator=g, dtype=F64) + 1
    assert wasserstein1(a, b) == pytest.approx(stats.wasserstein_distance(a, b))
    with pytest.raises(ValueError, match="same shape"):
        wasserstein1(x, y[:3])


def test_gaussian_closed_forms() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 3, generator=g, dtype=F64)
    s0 = a @ a.T + torch.eye(3, dtype=F64)
    s1 = 2.0 * torch.eye(3, dtype=F64)
    m0, m1 = torch.randn(3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    ref = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(m0, s0),
        torch.distributions.MultivariateNormal(m1, s1),
    )
    assert gaussian_kl(m0, s0, m1, s1) == pytest.approx(float(ref))
    # Commuting (isotropic) covariances: W2^2 = |dm|^2 + d (s0 - s1)^2.
    w2 = gaussian_w2(m0, 4.0 * torch.eye(3, dtype=F64), m1, torch.eye(3, dtype=F64))
    assert w2 == pytest.approx(math.sqrt(float((m0 - m1).pow(2).sum()) + 3 * 1.0))
    assert gaussian_w2(m0, s0, m0, s0) == pytest.approx(0.0, abs=1e-6)


def test_knn_kl_estimator_close_to_closed_form() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3000, 2, generator=g, dtype=F64)
    y = 1.5 * torch.randn(4000, 2, generator=g, dtype=F64) + 0.5
    exact = gaussian_kl(
        torch.zeros(2, dtype=F64),
        torch.eye(2, dtype=F64),
        0.5 * torch.ones(2, dtype=F64),
        2.25 * torch.eye(2, dtype=F64),
    )
    assert knn_kl_divergence(x, y, k=5) == pytest.approx(exact, abs=0.05)
    with pytest.raises(ValueError, match="repeated"):
        knn_kl_divergence(torch.zeros(5, 2, dtype=F64), y)


def test_gaussian_mixture_kl_single_components() -> None:
    g = torch.Generator().manual_seed(3)
    c0, c1 = torch.zeros(1, 3, dtype=F64), torch.tensor([[1.0, -0.5, 2.0]], dtype=F64)
    s = 0.7
    exact = float((c0 - c1).pow(2).sum()) / (2 * s * s)
    est = gaussian_mixture_kl(c0, c1, s, samples=20000, generator=g)
    assert est == pytest.approx(exact, rel=0.03)
    same = torch.randn(10, 3, generator=g, dtype=F64)
    assert gaussian_mixture_kl(same, same, s, generator=g) == pytest.approx(0.0, abs=1e-12)


def test_sdpi_gaussian_is_worst_case_tv() -> None:
    # TV between N(a, s^2) and N(-a, s^2) (the extreme inputs of a radius-a ball).
    for radius, s in ((0.5, 1.0), (2.0, 0.7)):
        tv = 2 * stats.norm.cdf(radius / s) - 1
        assert sdpi_gaussian(radius, s) == pytest.approx(tv)
    # Contraction of KL through the channel is at most eta (two 1-D input laws in [-r, r]).
    r, s = 1.0, 0.8
    grid = torch.linspace(-6, 6, 4001, dtype=F64)

    def out_density(points: list[float], weights: list[float]) -> torch.Tensor:
        return sum(
            w * torch.exp(-((grid - p) ** 2) / (2 * s * s)) for p, w in zip(points, weights)
        ) / (s * math.sqrt(2 * math.pi))  # type: ignore[return-value]

    p_in, q_in = [0.3, 0.7], [0.8, 0.2]
    pts = [-r, r]
    d_in = sum(p * math.log(p / q) for p, q in zip(p_in, q_in))
    po, qo = out_density(pts, p_in), out_density(pts, q_in)
    d_out = float((po * (po / qo).log()).sum() * (grid[1] - grid[0]))
    assert d_out <= sdpi_gaussian(r, s) * d_in


def test_dropout_coefficients() -> None:
    assert sdpi_dropout(0.5, 3) == pytest.approx(1 - 0.125)
    assert sdpi_dropconnect(0.5, 2, 2) == pytest.approx(1 - 0.5**4)
    assert sdpi_dropout(0.0, 4) == 1.0
    with pytest.raises(ValueError, match="rate"):
        sdpi_dropout(1.5, 2)


def test_remaining_lipschitz_bounds_the_map() -> None:
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    for start in range(len(net) + 1):
        lip = remaining_lipschitz(net, start)
        sub = net[start:]
        dim = 5 if start == 0 else 8 if start < 5 else 3
        a = torch.randn(200, dim, generator=g, dtype=F64)
        b = a + 0.1 * torch.randn(200, dim, generator=g, dtype=F64)
        with torch.no_grad():
            ratio = (sub(a) - sub(b)).norm(dim=1) / (a - b).norm(dim=1)
        assert float(ratio.max()) <= lip + 1e-9
    with pytest.raises(ValueError, match="Lipschitz"):
        remaining_lipschitz(nn.Sequential(nn.Softmax(dim=1)), 0)


def test_wasserstein_bound_holds_on_every_subsample() -> None:
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    x = torch.randn(300, 4, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(300, generator=g) > 0).long()
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:40]), y[:40]).backward()
        opt.step()
    res = layerwise_bounds(net, x[:40], y[:40], x[40:], y[40:], test_repeats=1, generator=g)
    assert res.layers == [0, 2, 4, 5]
    # One subsample: the bound is a deterministic inequality at every layer.
    assert all(b >= abs(res.gap) - 1e-9 for b in res.wasserstein)
    assert res.funnel == min(range(4), key=lambda i: res.wasserstein[i])
    assert res.kl is None
    with pytest.raises(ValueError, match="class"):
        layerwise_bounds(net, x[:40], y[:40], x[40:45], y[40:45])
