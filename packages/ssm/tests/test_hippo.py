"""HiPPO matrices: closed forms, exactness of the ODEs against quadrature, online LegS."""

import numpy as np
import pytest
import torch
from scipy import integrate, special
from scipy.integrate import solve_ivp

from torchloom.ssm import hippo, lagt, legendre_reconstruct, legs, legs_online, legt


def test_legs_closed_form_entries() -> None:
    a, b = legs(5)
    for n in range(5):
        assert b[n] == pytest.approx(np.sqrt(2 * n + 1))
        for k in range(5):
            want = -np.sqrt((2 * n + 1) * (2 * k + 1)) if n > k else (-(n + 1) if n == k else 0)
            assert a[n, k].item() == pytest.approx(want)
    # LegS eigenvalues are -1, -2, ..., -N (lower triangular with diagonal -(n+1))
    eig = torch.linalg.eigvals(a).real.sort().values
    assert torch.allclose(eig, -torch.arange(5.0, 0, -1).double())


def _legendre_coeffs(f, t0: float, t1: float, n: int) -> np.ndarray:
    """c_n = 1/(t1-t0) ∫ f(x) sqrt(2n+1) P_n(2(x-t0)/(t1-t0) - 1) dx by Gauss–Legendre."""
    z, w = np.polynomial.legendre.leggauss(64)
    x = t0 + (z + 1) / 2 * (t1 - t0)
    fx = f(x)
    return np.array(
        [0.5 * np.sum(w * fx * np.sqrt(2 * k + 1) * special.eval_legendre(k, z)) for k in range(n)]
    )


def test_legs_ode_is_exact_projection() -> None:
    # c' = (A c + B f)/t started at the projection on [0, t0] stays the projection on [0, t]
    n = 8
    a, b = (m.numpy() for m in legs(n))

    def f(x):
        return np.sin(3 * x) + 0.5 * np.cos(7 * x)

    t0, t1 = 0.5, 2.0
    sol = solve_ivp(
        lambda t, c: (a @ c + b * f(t)) / t,
        (t0, t1),
        _legendre_coeffs(f, 0.0, t0, n),
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(sol.y[:, -1], _legendre_coeffs(f, 0.0, t1, n), atol=1e-7)


def test_legt_exact_for_polynomials_in_window() -> None:
    # LegT's derivation approximates f(t-θ) by its reconstruction, exact when f has degree < N
    n, theta = 6, 0.7
    a, b = (m.numpy() for m in legt(n, theta))
    coef = np.array([0.3, -1.0, 0.5, 2.0, -0.4])  # degree 4 < 6

    def f(x):
        return np.polyval(coef, x)

    t0, t1 = 1.0, 1.8
    sol = solve_ivp(
        lambda t, c: a @ c + b * f(t),
        (t0, t1),
        _legendre_coeffs(f, t0 - theta, t0, n),
        rtol=1e-11,
        atol=1e-12,
    )
    np.testing.assert_allclose(sol.y[:, -1], _legendre_coeffs(f, t1 - theta, t1, n), atol=1e-7)


def test_lagt_exact_laguerre_projection() -> None:
    n, beta, t = 5, 1.5, 2.0
    a, b = (m.numpy() for m in lagt(n, beta))
    sol = solve_ivp(lambda s, c: a @ c + b * np.cos(s), (0, t), np.zeros(n), rtol=1e-11, atol=1e-12)
    want = [
        integrate.quad(
            lambda x, k=k: (
                np.cos(x)
                * special.eval_laguerre(k, beta * (t - x))
                * beta
                * np.exp(-beta * (t - x))
            ),
            0,
            t,
        )[0]
        for k in range(n)
    ]
    np.testing.assert_allclose(sol.y[:, -1], want, atol=1e-7)


def test_legs_online_reconstructs_history(device: torch.device) -> None:
    # HiPPO-LegS online function approximation: c_L summarises the whole history u_1..u_L
    length, n = 2000, 32
    x = torch.linspace(0, 1, length, dtype=torch.float64, device=device)
    u = torch.stack([torch.sin(6 * x) + 0.5 * torch.cos(15 * x), torch.exp(-3 * x) * x])
    c = legs_online(u, n)
    assert c.shape == (2, length, n)
    rec = legendre_reconstruct(c[:, -1], x)
    rel = (rec - u).norm(dim=-1) / u.norm(dim=-1)
    assert bool((rel < 2e-2).all()), rel
    # the final state agrees with the exact Legendre projection of the sampled signal
    want = _legendre_coeffs(lambda s: np.sin(6 * s) + 0.5 * np.cos(15 * s), 0.0, 1.0, n)
    np.testing.assert_allclose(c[0, -1, :12].cpu().numpy(), want[:12], atol=1e-2)
    # a tiny state cannot: reconstruction with N=4 is much worse
    rec4 = legendre_reconstruct(legs_online(u[:1], 4)[:, -1], x)
    assert ((rec4 - u[:1]).norm() / u[:1].norm()).item() > 5 * rel[0].item()


def test_legendre_reconstruct_matches_scipy() -> None:
    c = torch.randn(3, 7, dtype=torch.float64)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    want = sum(
        c[:, k : k + 1].numpy() * np.sqrt(2 * k + 1) * special.eval_legendre(k, 2 * x.numpy() - 1)
        for k in range(7)
    )
    np.testing.assert_allclose(legendre_reconstruct(c, x).numpy(), want, atol=1e-12)


def test_dispatch_and_errors() -> None:
    for m in ("legs", "legt", "lagt"):
        a, b = hippo(m, 4, dtype=torch.float32)
        assert a.shape == (4, 4) and b.shape == (4,) and a.dtype == torch.float32
    with pytest.raises(ValueError, match="measure"):
        hippo("fourier", 4)
    with pytest.raises(ValueError, match="state_dim"):
        legs(0)
    with pytest.raises(ValueError, match="theta"):
        legt(3, theta=-1.0)
    with pytest.raises(TypeError, match="u"):
        legs_online(torch.ones(3, dtype=torch.long), 4)
