"""Neural-collapse metrics and the predicted deep-linear geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchloom.theory import (
    class_means,
    etf_distance,
    imbalanced_collapse_geometry,
    nc1,
    nc4,
    neural_collapse_metrics,
    orthogonal_frame_distance,
)

F64 = torch.float64


def _simplex_etf(k: int, d: int) -> torch.Tensor:
    """K unit vectors in R^d with pairwise cosine -1/(K-1)."""
    q, _ = torch.linalg.qr(torch.randn(d, k, dtype=F64))
    m = math.sqrt(k / (k - 1)) * (torch.eye(k, dtype=F64) - 1.0 / k)
    return (q @ m).T  # (K, d)


def _collapsed(k: int, d: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    means = 3.0 * _simplex_etf(k, d)
    y = torch.arange(k).repeat_interleave(per_class)
    return means[y], y, means


@settings(max_examples=10, deadline=None)
@given(k=st.integers(2, 6), extra=st.integers(0, 3), scale=st.floats(0.1, 10.0))
def test_metrics_vanish_on_simplex_etf_and_are_rotation_invariant(
    k: int, extra: int, scale: float
) -> None:
    d = k + extra
    h, y, means = _collapsed(k, d, 4)
    h = h + 0.7  # a global offset does not matter: NC2 uses globally centred means
    m = neural_collapse_metrics(scale * h, y, weight=means)
    for v in (m.nc1, m.nc2_equinorm, m.nc2_equiangular, m.nc2_etf, m.nc2_etf_classifier, m.nc3):
        assert v is not None and abs(v) < 1e-10
    assert m.nc4 == 0.0
    # Rotations of the feature space (applied to features and classifier) change nothing.
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64))
    noisy = h + 0.3 * torch.randn_like(h)
    a = neural_collapse_metrics(noisy, y, weight=means)
    b = neural_collapse_metrics(noisy @ q, y, weight=means @ q)
    for f in ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_etf", "nc3", "nc4"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-8, abs=1e-10)


def test_nc1_matches_numpy_reference_and_grows_with_noise() -> None:
    h, y, _ = _collapsed(4, 6, 10)
    vals = []
    for noise in (0.1, 0.5, 1.0):
        hn = h + noise * torch.randn_like(h)
        hn_np, y_np = hn.numpy(), y.numpy()
        mu = np.stack([hn_np[y_np == c].mean(0) for c in range(4)])
        g = hn_np.mean(0)
        sw = sum(np.outer(v - mu[c], v - mu[c]) for v, c in zip(hn_np, y_np)) / len(y_np)
        sb = (mu - g).T @ (mu - g) / 4
        ref = np.trace(sw @ np.linalg.pinv(sb)) / 4
        val = float(nc1(hn, y))
        assert val == pytest.approx(ref, rel=1e-8)
        vals.append(val)
    assert vals[0] < vals[1] < vals[2]


def test_orthogonal_frame_and_etf_distances() -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=F64))
    frame = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=F64)) @ q[:4]
    assert float(orthogonal_frame_distance(frame)) < 1e-12
    assert float(etf_distance(frame)) > 0.1
    etf = _simplex_etf(4, 5)
    assert float(etf_distance(etf)) < 1e-12
    assert float(orthogonal_frame_distance(etf)) == pytest.approx(1 / 3)


def test_nc4_counts_disagreements() -> None:
    h, y, means = _collapsed(3, 3, 5)
    assert float(nc4(h, y, means)) == 0.0
    # A classifier that swaps classes 0 and 1 disagrees on those 10 of 15 samples.
    swapped = means[[1, 0, 2]]
    assert float(nc4(h, y, swapped)) == pytest.approx(10 / 15)


def _ufm_objective(
    h: torch.Tensor, ws: list[torch.Tensor], y: torch.Tensor, lams: list[float], lam_h: float
) -> torch.Tensor:
    out = h
    for w in ws:
        out = out @ w.T
    target = torch.nn.functional.one_hot(y).to(h.dtype)
    n = h.shape[0]
    reg = sum(lam / 2 * (w**2).sum() for lam, w in zip(lams, ws))
    return 0.5 * ((out - target) ** 2).sum() / n + reg + lam_h / 2 * (h**2).sum()


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_predicted_geometry_is_a_critical_point_of_the_ufm(layers: int) -> None:
    sizes = [30, 12, 6]
    lams = [4e-3] * layers
    lam_h = 2e-3
    geo = imbalanced_collapse_geometry(sizes, lams, lam_h)
    k = len(sizes)
    y = torch.arange(k).repeat_interleave(torch.tensor(sizes))
    # Build the predicted minimiser: diagonal factors with the predicted singular values.
    hbar = torch.diag(geo.feature_norms)  # (K, d=K): orthogonal class means
    h = hbar[y].clone().requires_grad_(True)
    ws = [torch.diag(a).clone().requires_grad_(True) for a in geo.layer_norms]
    loss = _ufm_objective(h, ws, y, lams, lam_h)
    grads = torch.autograd.grad(loss, [h, *ws])
    assert max(float(g.abs().max()) for g in grads) < 1e-7
    # The product recovers the scalar solution s_k = prod of factor singular values * sqrt(n_k).
    prod = geo.feature_norms * torch.tensor(sizes, dtype=F64).sqrt()
    for a in geo.layer_norms:
        prod = prod * a
    torch.testing.assert_close(prod, geo.singular_values)
    # Larger classes get longer classifier rows and shorter feature means.
    assert (geo.classifier_norms.diff() < 0).all()
    assert (geo.feature_norms.diff() > 0).all()


def test_gradient_descent_reaches_predicted_imbalanced_geometry() -> None:
    sizes, lam = [24, 10, 4], 5e-3
    k, d, n = len(sizes), 8, sum(sizes)
    y = torch.arange(k).repeat_interleave(torch.tensor(sizes))
    h = (0.1 * torch.randn(n, d, dtype=F64)).requires_grad_(True)
    w1 = (0.1 * torch.randn(d, d, dtype=F64)).requires_grad_(True)
    w2 = (0.1 * torch.randn(k, d, dtype=F64)).requires_grad_(True)
    opt = torch.optim.SGD([h, w1, w2], lr=0.5, momentum=0.9)
    for _ in range(600):
        opt.zero_grad()
        _ufm_objective(h, [w1, w2], y, [lam, lam], lam).backward()
        opt.step()
    geo = imbalanced_collapse_geometry(sizes, [lam, lam], lam)
    feats = (h @ w1.T).detach()
    means, _ = class_means(feats, y)
    assert float(nc1(feats, y)) < 1e-6
    assert float(orthogonal_frame_distance(means)) < 1e-4
    torch.testing.assert_close(means.norm(dim=1), geo.last_feature_norms, rtol=1e-4, atol=0)
    torch.testing.assert_close(w2.detach().norm(dim=1), geo.classifier_norms, rtol=1e-4, atol=0)


def test_minority_collapse_and_one_layer_closed_form() -> None:
    # One layer: s_k = (sqrt(n_k) - N sqrt(lambda_W lambda_H))_+ ; a tiny class can vanish.
    sizes = [100, 100, 1]
    geo = imbalanced_collapse_geometry(sizes, [0.01], 0.01)
    expected = torch.tensor([max(math.sqrt(n) - 201 * 0.01, 0.0) for n in sizes], dtype=F64)
    torch.testing.assert_close(geo.singular_values, expected)
    assert float(geo.singular_values[-1]) == 0.0


def test_bad_inputs() -> None:
    h = torch.randn(6, 3, dtype=F64)
    with pytest.raises(TypeError, match="labels"):
        nc1(h, torch.zeros(6))
    with pytest.raises(ValueError, match="labels must have shape"):
        nc1(h, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty classes"):
        nc1(h, torch.tensor([0, 0, 2, 2, 0, 2]))
    with pytest.raises(ValueError, match="class_sizes"):
        imbalanced_collapse_geometry([5], [0.1], 0.1)
    with pytest.raises(ValueError, match="weight must have shape"):
        nc4(h, torch.tensor([0, 1, 0, 1, 0, 1]), torch.randn(3, 3, dtype=F64))
