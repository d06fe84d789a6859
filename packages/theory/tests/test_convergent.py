"""Tests for torchloom.theory.convergent (Li, Yosinski, Clune, Lipson & Hopcroft 2016)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from torchloom.theory.convergent import (
    bipartite_matching,
    convergence_summary,
    correlation_matrices,
    lasso_fista,
    layer_activations,
    semi_matching,
    sparse_prediction,
    spectral_alignment,
    subspace_r2,
)


def test_correlations_match_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=g, dtype=torch.float64)
    b = a[:, :3] @ torch.randn(3, 5, generator=g, dtype=torch.float64) + torch.randn(
        50, 5, generator=g, dtype=torch.float64
    )
    caa, cbb, cab = correlation_matrices(a, b)
    full = np.corrcoef(np.concatenate([a.numpy(), b.numpy()], 1).T)
    assert np.allclose(caa.numpy(), full[:4, :4])
    assert np.allclose(cbb.numpy(), full[4:, 4:])
    assert np.allclose(cab.numpy(), full[:4, 4:])
    # A dead (constant) unit correlates with nothing.
    a[:, 0] = 3.0
    caa, _, cab = correlation_matrices(a, b)
    assert caa[0].abs().max() == 0 and cab[0].abs().max() == 0
    with pytest.raises(ValueError):
        correlation_matrices(a, b[:10])


def test_bipartite_matching_recovers_a_permutation_and_is_optimal() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(200, 6, generator=g, dtype=torch.float64)
    perm = torch.randperm(6, generator=g)
    b = a[:, perm] * torch.rand(6, generator=g, dtype=torch.float64).add(0.5) + 0.1 * torch.randn(
        200, 6, generator=g, dtype=torch.float64
    )
    _, _, cab = correlation_matrices(a, b)
    partner, value = bipartite_matching(cab)
    # Unit perm[j] of net 1 became unit j of net 2.
    inv = torch.argsort(perm)
    assert torch.equal(partner, inv)
    assert (value > 0.9).all()
    # Optimal against brute-force enumeration of all assignments on a small random matrix.
    c = torch.randn(5, 5, generator=g, dtype=torch.float64)
    best = max(sum(float(c[i, p[i]]) for i in range(5)) for p in itertools.permutations(range(5)))
    _, v = bipartite_matching(c)
    assert float(v.sum()) == pytest.approx(best)
    # Semi-matching is at least as good unit by unit, and can reuse partners.
    _, semi = semi_matching(c)
    _, v2 = bipartite_matching(c)
    assert (semi >= v2 - 1e-12).all()
    # Rectangular: one entry per unit of the smaller net, partners distinct.
    p3, _ = bipartite_matching(torch.randn(3, 7, generator=g))
    assert p3.shape == (3,) and len(set(p3.tolist())) == 3
    p4, _ = bipartite_matching(torch.randn(7, 3, generator=g))
    assert p4.shape == (3,) and len(set(p4.tolist())) == 3


def test_lasso_matches_sklearn() -> None:
    from sklearn.linear_model import Lasso

    g = torch.Generator().manual_seed(2)
    x = torch.randn(120, 8, generator=g, dtype=torch.float64)
    w_true = torch.tensor([1.5, 0, 0, -2.0, 0, 0, 0.5, 0], dtype=torch.float64)
    y = x @ w_true + 0.1 * torch.randn(120, generator=g, dtype=torch.float64)
    for alpha in (0.01, 0.1, 0.5):
        w = lasso_fista(x, y, alpha, iters=5000, tol=1e-13)
        ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(x, y)
        assert np.allclose(w.numpy(), ref.coef_, atol=1e-6)
    # Many targets at once equal column-by-column solutions; alpha = 0 is least squares.
    y2 = torch.stack([y, x[:, 1] - x[:, 2]], 1)
    w2 = lasso_fista(x, y2, 0.1, iters=5000, tol=1e-13)
    assert torch.allclose(w2[:, 0], lasso_fista(x, y, 0.1, iters=5000, tol=1e-13), atol=1e-8)
    ls = torch.linalg.lstsq(x, y2).solution
    assert torch.allclose(lasso_fista(x, y2, 0.0, iters=5000, tol=1e-14), ls, atol=1e-6)
    with pytest.raises(ValueError):
        lasso_fista(x, y, -1.0)


def test_sparse_prediction_finds_the_one_to_many_map() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64)
    # Unit 0 of net 2 is a mix of units 1 and 4 of net 1, unit 1 copies unit 2.
    b = torch.stack([a[:, 1] + a[:, 4], a[:, 2]], 1)
    w, r2 = sparse_prediction(a, b, alpha=0.02)
    assert w.shape == (6, 2) and r2.shape == (2,)
    assert (r2 > 0.99).all()
    assert set(torch.nonzero(w[:, 0].abs() > 0.05).flatten().tolist()) == {1, 4}
    assert set(torch.nonzero(w[:, 1].abs() > 0.05).flatten().tolist()) == {2}
    with pytest.raises(ValueError):
        sparse_prediction(a, b, a_eval=a)


def test_spectral_alignment_finds_shared_subspaces() -> None:
    g = torch.Generator().manual_seed(4)
    # Three latent factors; each net has several units mixing only one factor (different bases).
    z = torch.randn(600, 3, generator=g, dtype=torch.float64)
    fa = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    fb = torch.tensor([2, 2, 1, 1, 1, 0, 0, 0, 0])
    a = z[:, fa] * torch.rand(8, generator=g, dtype=torch.float64).add(0.5)
    a = a + 0.3 * torch.randn(600, 8, generator=g, dtype=torch.float64)
    b = z[:, fb] * torch.rand(9, generator=g, dtype=torch.float64).add(0.5)
    b = b + 0.3 * torch.randn(600, 9, generator=g, dtype=torch.float64)
    caa, cbb, cab = correlation_matrices(a, b)
    sp = spectral_alignment(caa, cbb, cab, 3, torch.Generator().manual_seed(0))
    # Units sharing a factor share a cluster, across the two nets.
    for f in range(3):
        labels = torch.cat([sp.labels_a[fa == f], sp.labels_b[fb == f]])
        assert (labels == labels[0]).all()
    assert len(set(sp.labels_a.tolist()) | set(sp.labels_b.tolist())) == 3
    r2 = subspace_r2(a, b, sp.groups_a, sp.groups_b)
    assert r2.shape == (9,) and (r2 > 0.5).all()
    with pytest.raises(ValueError):
        spectral_alignment(caa, cbb, cab, 0)


def test_subspace_r2_matches_lstsq() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(100, 4, generator=g, dtype=torch.float64)
    b = a @ torch.randn(4, 3, generator=g, dtype=torch.float64) + torch.randn(
        100, 3, generator=g, dtype=torch.float64
    )
    idx = torch.arange(4)
    r2 = subspace_r2(a, b, [idx], [torch.arange(3)], ridge=0.0)
    x1 = torch.cat([a, torch.ones(100, 1, dtype=torch.float64)], 1)
    res = b - x1 @ torch.linalg.lstsq(x1, b).solution
    ref = 1 - res.pow(2).sum(0) / (b - b.mean(0)).pow(2).sum(0)
    assert torch.allclose(r2, ref, atol=1e-10)


def test_layer_activations_flattens_space_and_summary() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 25, 3)
    )
    x = torch.randn(10, 1, 5, 5)
    act = layer_activations(net, net[0], x, batch_size=3)
    assert act.shape == (10 * 25, 4)
    # Row n * 25 + p is position p of example n.
    assert torch.allclose(act[7 * 25 + 12], net[0](x[7:8])[0, :, 2, 2], atol=1e-6)
    assert not net[0]._forward_hooks
    with pytest.raises(ValueError):
        layer_activations(net, nn.Linear(2, 2), x)
    # Identical nets: every unit matched perfectly, all R² = 1.
    s = convergence_summary(act, act.clone(), generator=torch.Generator().manual_seed(0))
    live = act.std(0) > 0
    assert torch.allclose(s.matched_corr[live], torch.ones(int(live.sum()), dtype=torch.float64))
    assert s.one_to_one_r2 == pytest.approx(float(live.double().mean()), abs=1e-6)
    assert s.full_r2 >= s.one_to_one_r2 - 1e-9
    assert (s.semi_corr >= s.matched_corr - 1e-12).all()
