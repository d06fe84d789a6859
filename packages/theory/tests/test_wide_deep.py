"""Deep NTK recursion, Hermite duals, the taxonomy of depth limits and their classifiers."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.theory import ntk_kernel
from torchloom.theory.wide_deep import (
    HermiteActivation,
    deep_ntk,
    hermite_coefficients,
    koenigs_kernel,
    limit_classifier,
    majority_vote_classifier,
    nearest_neighbor_classifier,
    ntk_classifier,
    singular_activation,
    singular_kernel_classifier,
)

F64 = torch.float64


def _sphere(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x / x.norm(dim=1, keepdim=True)


def test_dual_is_gaussian_expectation_and_normalised() -> None:
    act = HermiteActivation.from_coefficients([0.3, -0.5, 0.8, 0.2])
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=F64)
    w = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=F64)
    for xi in (-0.6, 0.0, 0.4, 0.9):
        u, v = z, xi * z + math.sqrt(1 - xi * xi) * w
        mc = float((act(u) * act(v)).mean())
        assert float(act.dual(torch.tensor(xi, dtype=F64))) == pytest.approx(mc, abs=0.02)
    assert float(act.dual(torch.tensor(1.0, dtype=F64))) == pytest.approx(1.0)
    # k'(xi) by finite differences.
    xi = torch.tensor(0.37, dtype=F64)
    fd = (act.dual(xi + 1e-6) - act.dual(xi - 1e-6)) / 2e-6
    assert float(act.dual_derivative(xi)) == pytest.approx(float(fd), rel=1e-6)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_deep_ntk_equals_ntk_kernel_recursion(depth: int) -> None:
    act = HermiteActivation.from_coefficients([0.2, 0.7, 0.5, 0.3])
    d = 4
    x = _sphere(6, d, 2) * math.sqrt(d)  # ntk.py uses x.x'/D: unit cosines at norm sqrt(D)
    ref = ntk_kernel(x, depth=depth, activation=act, sigma_w2=1.0, sigma_b2=0.0, nodes=40)
    torch.testing.assert_close(deep_ntk(x, activation=act, depth=depth), ref)


def test_hermite_coefficients_roundtrip_and_relu_dual() -> None:
    act = HermiteActivation.from_coefficients([0.1, 0.6, -0.3, 0.5])
    back = hermite_coefficients(act, degree=6)
    torch.testing.assert_close(back.coefficients[:4], act.coefficients)
    assert float(back.coefficients[4:].abs().max()) < 1e-10
    relu = hermite_coefficients(torch.relu, degree=40)
    xi = torch.linspace(-0.9, 0.9, 7, dtype=F64)
    arccos = ((1 - xi**2).sqrt() + (math.pi - torch.acos(xi)) * xi) / math.pi
    torch.testing.assert_close(relu.dual(xi), arccos, atol=2e-3, rtol=0)
    assert relu.limit_class == "marginal"


def test_taxonomy_classes() -> None:
    assert HermiteActivation.from_coefficients([0.5, 0, 1]).limit_class == "majority_vote"
    assert HermiteActivation.from_coefficients([0, 0, 1, 0.5]).limit_class == "nearest_neighbor"
    assert HermiteActivation.from_coefficients([0, 1, 1]).limit_class == "singular_kernel"
    with pytest.raises(ValueError, match="no singular exponent"):
        _ = HermiteActivation.from_coefficients([0, 0, 1]).singular_exponent
    with pytest.raises(ValueError, match="not all zero"):
        HermiteActivation.from_coefficients([0.0, 0.0])


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_singular_activation_exponent_and_koenigs(exponent: float) -> None:
    act = singular_activation(exponent)
    assert act.limit_class == "singular_kernel"
    assert 2 * act.singular_exponent == pytest.approx(exponent, rel=1e-9)
    # h(xi) ~ (1 - xi)^(-exponent / 2) near 1.
    eps = torch.tensor([1e-7, 1e-8], dtype=F64)
    h = koenigs_kernel(1 - eps, act)
    slope = float((h[1] / h[0]).log() / (eps[1] / eps[0]).log())
    assert slope == pytest.approx(-exponent / 2, rel=0.02)
    # Schroeder equation h(k(xi)) = a h(xi).
    xi = torch.tensor([-0.5, 0.2, 0.7, 0.95], dtype=F64)
    a = float(act.dual_derivative(torch.zeros((), dtype=F64)))
    torch.testing.assert_close(koenigs_kernel(act.dual(xi), act), a * koenigs_kernel(xi, act))


def test_deep_ntk_converges_to_koenigs_kernel() -> None:
    act = singular_activation(2.0)
    a = float(act.dual_derivative(torch.zeros((), dtype=F64)))
    x = _sphere(5, 3, 3)
    xi = (x @ x.T).fill_diagonal_(0.0)
    h = koenigs_kernel(xi, act)
    errs = []
    for depth in (50, 400):
        k = deep_ntk(x, activation=act, depth=depth).fill_diagonal_(0.0)
        errs.append(float((k / (depth * a**depth) - h).norm() / h.norm()))
    assert errs[1] < errs[0] / 4
    assert errs[1] < 0.05


def test_limit_classifiers_against_brute_force() -> None:
    xtr, xte = _sphere(30, 3, 4), _sphere(10, 3, 5)
    ytr = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(6))
    nn = nearest_neighbor_classifier(xtr, ytr, xte)
    dist = torch.cdist(xte, xtr)
    assert torch.equal(nn, ytr[dist.argmin(1)])
    mv = majority_vote_classifier(ytr, 10)
    assert bool((mv == torch.bincount(ytr).argmax()).all())

    # A kernel that is 1 on the nearest point only reproduces 1-NN.
    def nearest_only(xi: torch.Tensor) -> torch.Tensor:
        return (xi == xi.max(1, keepdim=True).values).to(xi.dtype)

    assert torch.equal(singular_kernel_classifier(xtr, ytr, xte, nearest_only), nn)
    # A test point equal to a training point takes its label under a singular kernel.
    act = singular_activation(2.0)
    pred = limit_classifier(xtr, ytr, xtr[:5], act)
    assert torch.equal(pred, ytr[:5])
    with pytest.raises(ValueError, match="marginal"):
        limit_classifier(xtr, ytr, xte, hermite_coefficients(torch.relu, degree=10))
    with pytest.raises(ValueError, match="y_train"):
        nearest_neighbor_classifier(xtr, ytr.double(), xte)


def test_deep_nearest_neighbor_net_is_1nn() -> None:
    xtr, xte = _sphere(40, 3, 7), _sphere(30, 3, 8)
    ytr = (xtr[:, 0] > 0).long()
    act = HermiteActivation.from_coefficients([0, 0, 1, 0.5])
    assert not torch.equal(ntk_classifier(xtr, ytr, xte, activation=act, depth=1), ytr[:30])
    deep = ntk_classifier(xtr, ytr, xte, activation=act, depth=9)
    assert torch.equal(deep, limit_classifier(xtr, ytr, xte, act))
    with pytest.raises(ValueError, match="underflowed"):
        ntk_classifier(xtr, ytr, xte, activation=act, depth=40)


def test_nearest_neighbor_similarity_ranks_by_dual() -> None:
    xtr = torch.tensor([[1.0, 0.0], [-1.0, 0.05]], dtype=F64)
    ytr = torch.tensor([0, 1])
    xte = torch.tensor([[-0.2, 1.0]], dtype=F64)  # cosines ~ -0.196 and ~0.245
    assert int(nearest_neighbor_classifier(xtr, ytr, xte)[0]) == 1
    flipped = nearest_neighbor_classifier(xtr, ytr, xte, lambda xi: -xi)
    assert int(flipped[0]) == 0
