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


def test_lanczos_ritz_pairs_against_the_exact_spectrum() -> None:
    from torchloom.operator.data import lanczos_ritz

    p = poisson_2d(8)
    exact = np.linalg.eigvalsh(p.matrix.toarray())
    g = torch.Generator().manual_seed(0)
    # m = N: the Krylov space of a generic start vector is everything (up to the eigenvalue
    # multiplicities of the symmetric grid, which Lanczos sees once): the distinct eigenvalues
    vals, vecs = lanczos_ritz(p, p.size, generator=g)
    distinct = np.unique(np.round(exact, 8))
    np.testing.assert_allclose(np.unique(np.round(vals, 8)), distinct, atol=1e-7)
    # few steps: orthonormal Ritz vectors, values inside the spectrum, extremes converge first
    vals, vecs = lanczos_ritz(p, 20, generator=g)
    assert vecs.shape == (p.size, 20)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(20), atol=1e-10)
    assert exact[0] - 1e-10 <= vals.min() and vals.max() <= exact[-1] + 1e-10
    np.testing.assert_allclose(vecs.T @ (p.matrix @ vecs), np.diag(vals), atol=1e-9)
    assert abs(vals[0] - exact[0]) < 1e-2 * exact[0]
    with pytest.raises(ValueError, match="m must"):
        lanczos_ritz(p, 0)


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


# ---- Darcy ---------------------------------------------------------------------------------


def test_darcy_matrix_of_constant_coefficient_is_the_laplacian() -> None:
    from torchloom.operator.data import darcy_matrix

    n = 7
    h2 = 1.0 / (n + 1) ** 2
    diff = darcy_matrix(np.full((n, n), 2.5)) - 2.5 * poisson_2d(n).matrix / h2
    assert abs(diff).max() < 1e-9


def test_darcy_solver_converges_to_the_analytic_solution_at_second_order() -> None:
    from torchloom.operator.data import darcy_solve

    errs = []
    for n in (15, 31):
        x = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
        exact = torch.sin(np.pi * x)[:, None] * torch.sin(np.pi * x)[None, :]
        u = darcy_solve(torch.ones(n, n), 2 * np.pi**2 * exact)
        errs.append(float((u - exact).abs().max()))
    assert errs[1] < 3e-3
    assert errs[0] / errs[1] > 3.5  # O(h²)


def test_darcy_samples_solve_their_systems() -> None:
    from torchloom.operator.data import darcy_2d, darcy_matrix

    g = torch.Generator().manual_seed(0)
    for kind in ("threshold", "piecewise"):
        d = darcy_2d(3, 15, kind=kind, generator=g)
        assert d.a.shape == d.u.shape == (3, 15, 15) and d.n == 15
        assert float(d.a.min()) >= 3.0 and float(d.a.max()) <= 12.0
        for a, u in zip(d.a, d.u):
            r = darcy_matrix(a) @ u.reshape(-1).numpy() - d.f.reshape(-1).numpy()
            assert np.abs(r).max() < 1e-8
            assert float(u.min()) > 0  # maximum principle: f = 1 > 0 gives u > 0 inside
    pw = darcy_2d(2, 15, kind="piecewise", blocks=3, generator=g).a
    assert all(len(torch.unique(p)) <= 9 for p in pw)
    with pytest.raises(ValueError, match="kind"):
        darcy_2d(1, 7, kind="smooth")


# ---- ODE families ----------------------------------------------------------------------------


def test_ode_dataset_matches_analytic_solutions_and_equations() -> None:
    import sympy

    from torchloom.operator.data import ODE_FAMILIES, ode_dataset

    decay, rotation = ODE_FAMILIES[0], ODE_FAMILIES[1]
    d = ode_dataset(6, families=(decay, rotation), generator=torch.Generator().manual_seed(0))
    t = d.t.double()
    for i in range(6):
        x0 = d.x[i, 0].double()
        c = d.params[i]
        if int(d.family[i]) == 0:
            want = torch.stack([x0[0] * torch.exp(-c[0] * t), x0[1] * torch.exp(-c[1] * t)], 1)
        else:
            w = c[0] * t
            want = torch.stack(
                [
                    x0[0] * torch.cos(w) + x0[1] * torch.sin(w),
                    x0[1] * torch.cos(w) - x0[0] * torch.sin(w),
                ],
                1,
            )
        torch.testing.assert_close(d.x[i].double(), want, atol=2e-5, rtol=1e-4)
    # every family: the stored equation is the vector field of the stored trajectory
    full = ode_dataset(10, t_end=1.0, generator=torch.Generator().manual_seed(1))
    xs = sympy.symbols("x0 x1")
    dt = float(full.t[1] - full.t[0])
    for i in range(10):
        f = sympy.lambdify([xs], list(full.equations[i]))
        traj = full.x[i].double().numpy()
        deriv = (traj[2:] - traj[:-2]) / (2 * dt)
        field = np.array([np.broadcast_to(f(s), (2,)) for s in traj[1:-1]], dtype=float)
        np.testing.assert_allclose(deriv, field, atol=5e-3 * (1 + np.abs(field).max()))
        consts = [float(a) for a in sympy.preorder_traversal(full.equations[i][0]) if a.is_Float]
        assert all(float(f"{v:.2e}") == v for v in consts)  # 3 significant digits
