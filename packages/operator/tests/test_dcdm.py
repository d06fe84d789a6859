"""DCDM solver invariants against scipy (CG, spsolve), the loss, IC(0), and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import cg, spsolve

from torchloom.operator.data import poisson_2d, ritz_rhs
from torchloom.operator.dcdm import (
    DCDMNet,
    DCDMResNet,
    dcdm_loss,
    dcdm_solve,
    ic0_preconditioner,
    net_direction,
    train_dcdm,
)


def _problem(n: int = 8, solid: bool = True):  # type: ignore[no-untyped-def]
    obs = torch.zeros(n, n, dtype=torch.bool)
    if solid:
        obs[2:4, 3:5] = True
    p = poisson_2d(n, obs)
    b = torch.randn(n * n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return p, b * p.fluid.reshape(-1)


def _a_err(p, x: torch.Tensor, xs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    e = x.numpy() - xs
    return float(e @ (p.matrix @ e))


def test_identity_direction_is_cg() -> None:
    p, b = _problem()
    res = dcdm_solve(p, b, tol=1e-8)
    assert res.converged and res.residuals[-1] <= 1e-8
    xs: list[np.ndarray] = []
    cg(p.matrix, b.numpy(), rtol=1e-8, callback=lambda xk: xs.append(xk.copy()))
    # same Krylov iterates (CG's beta is the A-orthogonalisation against the last direction)
    assert abs(len(xs) - res.iterations) <= 1
    first = dcdm_solve(p, b, tol=1e-30, max_iter=5)
    np.testing.assert_allclose(first.x.numpy(), xs[4], rtol=1e-8, atol=1e-10)


def test_identity_without_orthogonalisation_is_steepest_descent() -> None:
    p, b = _problem()
    a = p.matrix
    x = np.zeros_like(b.numpy())
    r = b.numpy().copy()
    for _ in range(7):
        alpha = (r @ r) / (r @ (a @ r))
        x = x + alpha * r
        r = r - alpha * (a @ r)
    res = dcdm_solve(p, b, n_ortho=0, tol=1e-30, max_iter=7)
    np.testing.assert_allclose(res.x.numpy(), x, rtol=1e-10)
    assert dcdm_solve(p, b, n_ortho=0, tol=1e-4, max_iter=5000).converged


def test_exact_inverse_converges_in_one_step() -> None:
    p, b = _problem()
    inv = lambda r: torch.from_numpy(spsolve(p.matrix.tocsc(), r.numpy()))  # noqa: E731
    res = dcdm_solve(p.matrix, b, inv, tol=1e-10)
    assert res.iterations == 1


@pytest.mark.parametrize("n_ortho", [0, 1, 2, 4])
def test_a_norm_error_never_increases_for_any_direction(n_ortho: int) -> None:
    p, b = _problem()
    xs = spsolve(p.matrix.tocsc(), b.numpy())
    torch.manual_seed(0)
    net = DCDMNet(channels=4, levels=2)  # untrained: an arbitrary nonlinear direction map
    res = dcdm_solve(p, b, net_direction(net, p), tol=1e-30, max_iter=30, n_ortho=n_ortho)
    errs = []
    for k in range(0, 31, 5):
        r = dcdm_solve(p, b, net_direction(net, p), tol=1e-30, max_iter=k, n_ortho=n_ortho)
        errs.append(_a_err(p, r.x, xs))
    assert all(e2 <= e1 * (1 + 1e-12) for e1, e2 in itertools.pairwise(errs))
    assert errs[-1] < errs[0]
    assert len(res.residuals) == 31


def test_solution_matches_spsolve() -> None:
    p, b = _problem(10)
    xs = spsolve(p.matrix.tocsc(), b.numpy())
    jac = lambda r: r / 4.0 + 0.1 * torch.tanh(r)  # noqa: E731  (a nonlinear direction map)
    res = dcdm_solve(p.matrix, b, jac, tol=1e-10, max_iter=2000)
    assert res.converged
    np.testing.assert_allclose(res.x.numpy(), xs, rtol=1e-7, atol=1e-8)
    dense = dcdm_solve(torch.from_numpy(p.matrix.toarray()), b.reshape(10, 10), tol=1e-10)
    np.testing.assert_allclose(dense.x.numpy(), xs, rtol=1e-7, atol=1e-8)


def test_loss_is_scale_invariant_and_zero_at_inverse() -> None:
    p, _ = _problem(6, solid=False)
    b = ritz_rhs(p, 4, generator=torch.Generator().manual_seed(0)).double()
    a = p.matrix.toarray()
    q = torch.from_numpy(np.linalg.solve(a, b.reshape(4, -1).numpy().T).T).reshape(4, 6, 6)
    assert float(dcdm_loss(q, b, p.apply)) < 1e-20
    noise = torch.randn_like(q)
    noisy = q + 0.1 * noise
    l1 = dcdm_loss(noisy, b, p.apply)
    torch.testing.assert_close(dcdm_loss(-3.5 * noisy, b, p.apply), l1)
    # the residual after an exact A-norm line search: positive, smaller when q is nearer A⁻¹b
    assert 0 < float(dcdm_loss(q + 0.01 * noise, b, p.apply)) < float(l1)


def test_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    p = poisson_2d(8)
    rhs = ritz_rhs(p, 64, modes=64, generator=torch.Generator().manual_seed(0))
    net = DCDMNet(channels=4, levels=2)
    losses = train_dcdm(net, p, rhs, steps=60, generator=torch.Generator().manual_seed(0))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:3])


def test_resnet_is_local_and_size_independent() -> None:
    """The authors' network: one set of weights for every grid, a finite receptive field."""
    torch.manual_seed(0)
    net = DCDMResNet(channels=4).double()
    # receptive field radius: 5 full-resolution convs, 6 convs at half resolution (+ pooling),
    # 4 after upsampling -> at most 5 + 2 * 6 + 1 + 4 = 22 cells
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 10, 10].backward()
    g = x.grad[0, 0].abs()  # type: ignore[index]
    assert float(g[33:, :].max()) == 0.0 and float(g[:, 33:].max()) == 0.0
    assert float(g[10, 10]) > 0 and float(g[10 + 15, 10]) > 0  # the coarse level reaches on
    for n in (8, 16, 24):
        assert net(torch.randn(2, 1, n, n, dtype=torch.float64)).shape == (2, 1, n, n)
    # convolutions and 2x2 pooling only: the output commutes with even shifts away from the
    # boundary (more than the receptive field from it)
    y = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    y[0, 0, 30, 30] = 1.0
    out, shifted = net(y), net(torch.roll(y, (2, 4), (2, 3)))
    inner = (..., slice(24, 40), slice(24, 40))
    torch.testing.assert_close(shifted[inner], torch.roll(out, (2, 4), (2, 3))[inner])
    odd = net(torch.roll(y, (1, 0), (2, 3)))
    assert not torch.allclose(odd[inner], torch.roll(out, (1, 0), (2, 3))[inner])


def test_resnet_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    p = poisson_2d(8)
    rhs = ritz_rhs(p, 64, modes=64, generator=torch.Generator().manual_seed(0))
    net = DCDMResNet(channels=4)
    losses = train_dcdm(net, p, rhs, steps=60, generator=torch.Generator().manual_seed(0))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:3])


def test_ic0_is_incomplete_cholesky() -> None:
    p, _ = _problem(6)
    apply = ic0_preconditioner(p.matrix)
    n = p.size
    minv = np.stack([apply(np.eye(n)[i]) for i in range(n)], axis=1)
    np.testing.assert_allclose(minv, minv.T, atol=1e-12)
    m = np.linalg.inv(minv)
    a = p.matrix.toarray()
    pattern = a != 0  # IC(0): M agrees with A on A's sparsity pattern
    np.testing.assert_allclose(m[pattern], a[pattern], atol=1e-10)
    assert np.all(np.linalg.eigvalsh((m + m.T) / 2) > 0)


def test_bad_input() -> None:
    p, b = _problem(4)
    with pytest.raises(ValueError, match="square"):
        dcdm_solve(torch.randn(4, 5), torch.randn(4))
    with pytest.raises(ValueError, match="square"):
        dcdm_solve(sp.csr_matrix(np.ones((3, 4))), torch.randn(3))
    with pytest.raises(ValueError, match="b"):
        dcdm_solve(p, torch.randn(7, dtype=torch.float64))
    with pytest.raises(TypeError, match="a"):
        dcdm_solve([[1.0]], torch.randn(1))
    with pytest.raises(TypeError, match="b"):
        dcdm_solve(p, torch.ones(16, dtype=torch.long))
    with pytest.raises(ValueError, match="tol"):
        dcdm_solve(p, b, tol=0.0)
    with pytest.raises(ValueError, match="n_ortho"):
        dcdm_solve(p, b, n_ortho=-1)
    with pytest.raises(ValueError, match="x0"):
        dcdm_solve(p, b, x0=torch.zeros(3))
    with pytest.raises(ValueError, match="q and b"):
        dcdm_loss(torch.randn(2, 3), torch.randn(2, 4), p.apply)
    with pytest.raises(ValueError, match="square"):
        ic0_preconditioner(sp.csr_matrix(np.ones((3, 4))))
    with pytest.raises(ValueError, match="r"):
        DCDMNet(levels=2)(torch.randn(1, 1, 6, 6))
    with pytest.raises(ValueError, match="activation"):
        DCDMNet(activation="gelu")
    with pytest.raises(ValueError, match="levels"):
        DCDMResNet(levels=-1)
    with pytest.raises(ValueError, match="not divisible"):
        DCDMResNet(levels=2)(torch.randn(1, 1, 6, 6))
    with pytest.raises(ValueError, match="r must"):
        DCDMResNet()(torch.randn(1, 2, 8, 8))
