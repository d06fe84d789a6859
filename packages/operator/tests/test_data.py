"""The matrix-free Poisson operator equals the scipy matrix; the matrix is the SPD Laplacian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchloom.operator.data import gaussian_sources, low_eigenvectors, poisson_2d, ritz_rhs


def _obstacles(n: int) -> torch.Tensor:
    m = torch.zeros(n, n, dtype=torch.bool)
    m[n // 4 : n // 2, n // 3 : n // 2 + 1] = True
    return m


@pytest.mark.parametrize("n", [3, 8, 13])
@pytest.mark.parametrize("solid", [False, True])
def test_operator_equals_sparse_matvec(n: int, solid: bool) -> None:
    p = poisson_2d(n, _obstacles(n) if solid else None)
    u = torch.randn(5, n * n, dtype=torch.float64)
    want = (p.matrix @ u.numpy().T).T
    np.testing.assert_allclose(p.apply(u).numpy(), want, rtol=1e-12, atol=1e-12)
    # grid layout gives the same numbers
    grid = p.apply(u.reshape(5, n, n))
    np.testing.assert_allclose(grid.reshape(5, -1).numpy(), want, rtol=1e-12, atol=1e-12)


def test_matrix_is_spd_laplacian() -> None:
    n = 6
    a = poisson_2d(n).matrix.toarray()
    np.testing.assert_array_equal(a, a.T)
    assert np.all(np.diag(a) == 4)
    # known spectrum of the Dirichlet 5-point Laplacian: 4 - 2cos(iπ/(n+1)) - 2cos(jπ/(n+1))
    k = np.arange(1, n + 1) * np.pi / (n + 1)
    lam = np.sort((4 - 2 * np.cos(k)[:, None] - 2 * np.cos(k)[None, :]).ravel())
    np.testing.assert_allclose(np.linalg.eigvalsh(a), lam, atol=1e-10)


def test_obstacle_rows_decoupled() -> None:
    n = 8
    obs = _obstacles(n)
    a = poisson_2d(n, obs).matrix.toarray()
    for i in np.flatnonzero(obs.numpy().ravel()):
        row = np.zeros(n * n)
        row[i] = 1.0
        np.testing.assert_array_equal(a[i], row)
    assert np.all(np.linalg.eigvalsh(a) > 0)


def test_ritz_rhs_unit_norm_low_spectrum_and_zero_on_solid() -> None:
    n = 8
    obs = _obstacles(n)
    p = poisson_2d(n, obs)
    g = torch.Generator().manual_seed(0)
    b = ritz_rhs(p, 200, generator=g).double()
    np.testing.assert_allclose(b.reshape(200, -1).norm(dim=1).numpy(), 1.0, rtol=1e-5)
    assert float(b[:, obs].abs().max()) == 0.0
    # weighting the lower half makes the mean Rayleigh quotient far below that of white noise
    ab = p.apply(b)
    rq = float((b * ab).sum((1, 2)).mean())
    assert rq < 1.0  # white noise has E[bᵀAb]/‖b‖² ≈ 4 on the fluid cells


def test_gaussian_sources_unit_norm_and_zero_on_solid() -> None:
    n = 8
    obs = _obstacles(n)
    b = gaussian_sources(poisson_2d(n, obs), 20, generator=torch.Generator().manual_seed(0))
    assert b.shape == (20, n, n)
    np.testing.assert_allclose(b.reshape(20, -1).norm(dim=1).numpy(), 1.0, rtol=1e-5)
    assert float(b[:, obs].abs().max()) == 0.0
    with pytest.raises(ValueError, match="width"):
        gaussian_sources(poisson_2d(n), 2, width=0.0)


def test_low_eigenvectors_are_eigenvectors() -> None:
    p = poisson_2d(6)
    v = low_eigenvectors(p, 4)
    av = p.matrix @ v
    lam = (v * av).sum(0)
    np.testing.assert_allclose(av, v * lam, atol=1e-10)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="n"):
        poisson_2d(1)
    with pytest.raises(ValueError, match="obstacles"):
        poisson_2d(4, torch.zeros(3, 3, dtype=torch.bool))
    p = poisson_2d(4)
    with pytest.raises(ValueError, match="u"):
        p.apply(torch.randn(5))
    with pytest.raises(TypeError, match="u"):
        p.apply(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="count"):
        ritz_rhs(p, 0)
