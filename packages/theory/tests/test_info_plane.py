"""Tests for torchloom.theory.info_plane (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from torchloom.theory.info_plane import (
    InfoPlaneTracker,
    binned_mutual_information,
    discrete_entropy,
    discrete_mutual_information,
    kde_entropy_upper,
    kde_mutual_information,
    plot_info_plane,
    twelve_bit_task,
)


def _mi_enumerated(a: list[int], b: list[int]) -> float:
    """Σ p(a, b) log2 p(a, b) / (p(a) p(b)) from the counted joint table."""
    n = len(a)
    pab, pa, pb = Counter(zip(a, b, strict=True)), Counter(a), Counter(b)
    return sum(c / n * math.log2((c / n) / (pa[i] / n * pb[j] / n)) for (i, j), c in pab.items())


def test_discrete_entropy_and_mi_match_enumeration() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (400,), generator=g)
    b = (a + torch.randint(0, 3, (400,), generator=g)) % 4
    assert discrete_mutual_information(a, b) == pytest.approx(
        _mi_enumerated(a.tolist(), b.tolist()), abs=1e-10
    )
    # Hand-checked cases: a fair coin has 1 bit; 8 equiprobable values 3 bits; MI(A; A) = H(A).
    assert discrete_entropy(torch.tensor([0, 1, 0, 1])) == pytest.approx(1.0)
    assert discrete_entropy(torch.arange(8)) == pytest.approx(3.0)
    assert discrete_entropy(torch.tensor([[0, 1], [0, 1], [1, 0], [1, 1]])) == pytest.approx(1.5)
    assert discrete_mutual_information(a, a) == pytest.approx(discrete_entropy(a))
    # Independent product design: exactly zero.
    x = torch.arange(4).repeat_interleave(3)
    y = torch.arange(3).repeat(4)
    assert discrete_mutual_information(x, y) == pytest.approx(0.0, abs=1e-12)


def test_binned_mi_exact_cases_and_bounds() -> None:
    x, y = twelve_bit_task()
    n = x.shape[0]
    h_y = discrete_entropy(y)
    # T = X (12 binary units): I(X;T) = H(X) = 12 bits and I(T;Y) = H(Y).
    i_xt, i_ty = binned_mutual_information(x, x, y, n_bins=2, bin_range=(0.0, 1.0))
    assert i_xt == pytest.approx(12.0) and i_ty == pytest.approx(h_y)
    # T = one input bit: 1 bit about X.
    i_xt, _ = binned_mutual_information(x[:, :1], x, y, n_bins=30, bin_range=(0.0, 1.0))
    assert i_xt == pytest.approx(1.0)
    # A constant layer carries nothing.
    assert binned_mutual_information(torch.zeros(n, 3), x, y) == (0.0, 0.0)
    # Random features: I(X;T) <= H(X), I(T;Y) <= min(H(Y), I(X;T)) (data processing, Y = f(X)).
    g = torch.Generator().manual_seed(1)
    t = torch.tanh(x @ torch.randn(12, 3, generator=g))
    for bins in (2, 5, 30):
        i_xt, i_ty = binned_mutual_information(t, x, y, bins, (-1.0, 1.0))
        assert 0.0 <= i_ty <= min(h_y, i_xt) + 1e-9 and i_xt <= 12.0 + 1e-9
    # Data processing: a function of a layer (coarser bins nest in finer ones) loses information.
    fine = binned_mutual_information(t, x, y, 30, (-1.0, 1.0))
    coarse = binned_mutual_information(t, x, y, 15, (-1.0, 1.0))
    assert coarse[0] <= fine[0] + 1e-9 and coarse[1] <= fine[1] + 1e-9


def test_binned_mi_equals_plugin_entropy_of_codes() -> None:
    # T is deterministic in X and X uniform over distinct patterns, so I(X;T) = H(T).
    g = torch.Generator().manual_seed(2)
    x = torch.randperm(64, generator=g)[:, None].float()
    t = torch.rand(64, 2, generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    codes = (t * 4).floor().long().clamp(max=3)
    i_xt, i_ty = binned_mutual_information(t, x, y, n_bins=4, bin_range=(0.0, 1.0))
    assert i_xt == pytest.approx(discrete_entropy(codes))
    assert i_ty == pytest.approx(
        _mi_enumerated([int(a) * 4 + int(b) for a, b in codes], y.tolist())
    )
    with pytest.raises(ValueError):
        binned_mutual_information(t, x[:10], y)


def test_kde_single_point_and_separated_clusters() -> None:
    var = 0.01
    h_noise = 0.5 * 3 * (math.log(2 * math.pi * var) + 1) / math.log(2)
    # One centre: the mixture is the Gaussian itself, the bound is exact and I(X;T) = 0.
    assert kde_entropy_upper(torch.zeros(5, 3), var) == pytest.approx(h_noise)
    # Two far-apart centres, half the points each: exactly 1 bit, and it predicts Y fully.
    h = torch.cat([torch.zeros(8, 3), 100 * torch.ones(8, 3)])
    y = torch.cat([torch.zeros(8), torch.ones(8)]).long()
    i_xt, i_ty = kde_mutual_information(h, y, var)
    assert i_xt == pytest.approx(1.0, abs=1e-9) and i_ty == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError):
        kde_entropy_upper(h, 0.0)


def test_kde_is_an_upper_bound_on_mixture_entropy() -> None:
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(6, 2, generator=g, dtype=torch.float64) * 0.5
    var = 0.1
    bound = kde_entropy_upper(centres, var)
    # Monte Carlo entropy of the Gaussian mixture (in bits).
    m = 200_000
    comp = torch.randint(0, 6, (m,), generator=g)
    s = centres[comp] + var**0.5 * torch.randn(m, 2, generator=g, dtype=torch.float64)
    d2 = torch.cdist(s, centres).pow(2)
    logp = torch.logsumexp(-d2 / (2 * var), 1) - math.log(6) - math.log(2 * math.pi * var)
    mc = float(-logp.mean()) / math.log(2)
    assert bound >= mc - 0.01
    # ... and no larger than the trivial bound H(noise) + log2 N.
    h_noise = (math.log(2 * math.pi * var) + 1) / math.log(2)
    assert mc < bound <= h_noise + math.log2(6) + 1e-9
    # I(X;T) upper bound lies in [0, log2 N].
    i_xt, i_ty = kde_mutual_information(centres, torch.tensor([0, 0, 0, 1, 1, 1]), var)
    assert 0.0 <= i_xt <= math.log2(6) + 1e-9 and i_ty <= 1.0 + 1e-9


def test_twelve_bit_task_is_rotation_invariant_and_balanced() -> None:
    x, y = twelve_bit_task()
    assert x.shape == (4096, 12) and y.shape == (4096,)
    # All 4096 distinct patterns.
    assert len(torch.unique(x, dim=0)) == 4096
    assert abs(float(y.double().mean()) - 0.5) < 0.05
    # The rule depends on s_i s_j only: flipping all bits (s -> -s) leaves the label unchanged.
    codes = (x.long() * (1 << torch.arange(11, -1, -1))).sum(1)
    flipped = 4095 - codes
    assert torch.equal(y[flipped], y)
    # A rotation of the sphere that maps the icosahedron onto itself (72 degrees about a vertex)
    # permutes the bits and must leave every label unchanged.
    phi = (1 + 5**0.5) / 2
    v = []
    for a in (-1.0, 1.0):
        for b in (-phi, phi):
            v += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    verts = torch.tensor(v, dtype=torch.float64)
    verts = verts / verts.norm(dim=1, keepdim=True)
    k = verts[0]
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    ang = 2 * math.pi / 5
    rot = torch.eye(3, dtype=torch.float64) + math.sin(ang) * kx + (1 - math.cos(ang)) * kx @ kx
    perm = torch.cdist(verts @ rot.T, verts).argmin(1)
    assert sorted(perm.tolist()) == list(range(12)) and not torch.equal(perm, torch.arange(12))
    xp = torch.zeros_like(x)
    xp[:, perm] = x
    codes_p = (xp.long() * (1 << torch.arange(11, -1, -1))).sum(1)
    assert torch.equal(y[codes_p], y)
    with pytest.raises(ValueError):
        twelve_bit_task(degrees=(0,))


def test_tracker_hooks_match_direct_computation(tmp_path: Path) -> None:
    x, y = twelve_bit_task()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
    with InfoPlaneTracker(model, {"h1": model[1], "h2": model[3]}, x, y, bin_range=(-1, 1)) as trk:
        rows = trk.record(0)
        with torch.no_grad():
            h1 = model[1](model[0](x))
        assert rows[0]["layer"] == "h1"
        assert (rows[0]["i_xt"], rows[0]["i_ty"]) == binned_mutual_information(
            h1, x, y, 30, (-1, 1)
        )
        trk.record(1)
        e, ixt, _ = trk.trajectory("h2")
        assert e.tolist() == [0.0, 1.0] and ixt.shape == (2,)
        # Data processing along the network: h2 is a function of h1 ... up to binning of h1;
        # what must hold exactly is I(X;T) <= H(X) and I(T;Y) <= H(Y) for every layer.
        assert all(r["i_xt"] <= 12 + 1e-9 and r["i_ty"] <= 1 + 1e-9 for r in trk.history)
        fig = plot_info_plane(trk.history)
        fig.savefig(tmp_path / "ip.png")
    assert not model[1]._forward_hooks and not model[3]._forward_hooks
    kde = InfoPlaneTracker(model, {"h2": model[3]}, x[:256], y[:256], estimator="kde")
    r = kde.record(0)[0]
    assert r["i_xt"] >= 0.0
    with pytest.raises(ValueError):
        InfoPlaneTracker(model, {"h": model[1]}, x, y, estimator="mine")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        trk.trajectory("nope")
