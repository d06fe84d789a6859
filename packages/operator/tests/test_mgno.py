"""MgNO's V-cycle against a textbook sparse-matrix multigrid, its boundary conditions, and MgNO."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve

from torchloom.operator.data import darcy_matrix
from torchloom.operator.mgno import MgNO, VCycle, classical_vcycle_weights, mg_levels_ok


def _lap1d(n: int, bc: str) -> sp.csr_matrix:
    t = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tolil()
    if bc == "circular":
        t[0, n - 1] = t[n - 1, 0] = -1
    elif bc == "reflect":  # ghost u[-1] = u[1], u[n] = u[n-2]
        t[0, 1] = t[n - 1, n - 2] = -2
    return t.tocsr()


def _lap2d(n: int, bc: str, h: float = 1.0) -> sp.csr_matrix:
    t = _lap1d(n, bc)
    i = sp.identity(n)
    return (sp.kron(t, i) + sp.kron(i, t)).tocsr() / h**2


def _fw1d(n: int) -> sp.csr_matrix:
    """1D full weighting for Dirichlet vertex grids: coarse i = fine 2i+1."""
    m = (n - 1) // 2
    r = sp.lil_matrix((m, n))
    for i in range(m):
        r[i, 2 * i : 2 * i + 3] = [0.25, 0.5, 0.25]
    return r.tocsr()


def _textbook_vcycle(
    f: np.ndarray, n: int, levels: int, h: float, nu: int, omega: float
) -> np.ndarray:
    """Geometric multigrid written with sparse matrices (Dirichlet, pre-smoothing only)."""
    a = _lap2d(n, "zeros", h)
    d = a.diagonal()
    u = np.zeros_like(f)
    if levels == 1:
        for _ in range(nu):
            u = u + omega * (f - a @ u) / d
        return u
    for _ in range(nu):
        u = u + omega * (f - a @ u) / d
    r1 = _fw1d(n)
    r = sp.kron(r1, r1).tocsr()
    coarse = _textbook_vcycle(r @ (f - a @ u), (n - 1) // 2, levels - 1, 2 * h, nu, omega)
    return u + 4 * (r.T @ coarse)


@pytest.mark.parametrize("n,levels", [(15, 3), (31, 4)])
def test_vcycle_equals_textbook_multigrid(n: int, levels: int) -> None:
    h = 1.0 / (n + 1)
    cyc = VCycle(1, levels, "zeros", pre_smooth=2).double()
    classical_vcycle_weights(cyc, h=h, omega=0.8)
    f = torch.randn(3, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = cyc(f).reshape(3, -1).detach().numpy()
    for k in range(3):
        want = _textbook_vcycle(f[k, 0].reshape(-1).numpy(), n, levels, h, 2, 0.8)
        np.testing.assert_allclose(got[k], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", [15, 31])
def test_vcycle_reduces_poisson_residual_like_multigrid(n: int) -> None:
    """Iterating u ← u + V(f − Au) converges with a grid-independent factor (≈ 0.1-0.2)."""
    h = 1.0 / (n + 1)
    levels = int(np.log2(n + 1))  # down to a single coarse node
    cyc = VCycle(1, levels, "zeros", pre_smooth=2, post_smooth=1).double()
    classical_vcycle_weights(cyc, h=h, omega=0.8)
    a = darcy_matrix(np.ones((n, n)))  # the same Laplacian, built independently
    f = np.random.default_rng(0).standard_normal(n * n)
    u = np.zeros(n * n)
    res = [np.linalg.norm(f)]
    for _ in range(8):
        r = torch.from_numpy(f - a @ u).reshape(1, 1, n, n)
        u = u + cyc(r).detach().reshape(-1).numpy()
        res.append(np.linalg.norm(f - a @ u))
    factors = np.array(res[1:]) / np.array(res[:-1])
    assert factors[2:].max() < 0.25, factors
    exact = spsolve(a.tocsc(), f)
    assert np.linalg.norm(u - exact) < 1e-4 * np.linalg.norm(exact)
    # smoothing alone (one level) is far slower: the coarse grids do the work
    jac = VCycle(1, 1, "zeros", pre_smooth=2, post_smooth=1).double()
    classical_vcycle_weights(jac, h=h, omega=0.8)
    u1 = np.zeros(n * n)
    for _ in range(8):
        u1 = u1 + jac(torch.from_numpy(f - a @ u1).reshape(1, 1, n, n)).detach().reshape(-1).numpy()
    assert np.linalg.norm(f - a @ u1) > 1e3 * res[-1]


@pytest.mark.parametrize("bc", ["zeros", "circular", "reflect"])
def test_padding_mode_implements_the_boundary_condition(bc: str) -> None:
    n = {"zeros": 7, "circular": 8, "reflect": 9}[bc]
    cyc = VCycle(1, 1, bc, pre_smooth=1).double()  # type: ignore[arg-type]
    lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        cyc.S[0].copy_(lap[None, None])  # one smoothing step from u = 0 applies S to f
    f = torch.randn(2, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = cyc(f).reshape(2, -1).detach().numpy()
    want = (_lap2d(n, bc) @ f.reshape(2, -1).numpy().T).T
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_periodic_vcycle_is_translation_equivariant() -> None:
    torch.manual_seed(0)
    cyc = VCycle(3, 3, "circular", pre_smooth=1, post_smooth=1).double()
    f = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    shift = 4  # a multiple of 2**(levels-1): the coarse grids shift with it
    out = cyc(torch.roll(f, (shift, -shift), (2, 3)))
    torch.testing.assert_close(out, torch.roll(cyc(f), (shift, -shift), (2, 3)))


def test_reflect_vcycle_is_periodic_vcycle_on_the_mirrored_grid() -> None:
    """Neumann (reflect) on n = 17 nodes == periodic on the even extension of period 32."""
    torch.manual_seed(0)
    refl = VCycle(2, 4, "reflect", pre_smooth=1, post_smooth=1).double()
    with torch.no_grad():  # mirror-symmetric stencils, as a Neumann operator needs
        for p in refl.parameters():
            p.copy_((p + p.flip(-1)) / 2)
            p.copy_((p + p.flip(-2)) / 2)
    per = VCycle(2, 4, "circular", pre_smooth=1, post_smooth=1).double()
    per.load_state_dict(refl.state_dict())
    f = torch.randn(2, 2, 17, 17, dtype=torch.float64)
    ext = torch.cat([f, f.flip(-1)[..., 1:-1]], dim=-1)
    ext = torch.cat([ext, ext.flip(-2)[..., 1:-1, :]], dim=-2)
    assert ext.shape[-1] == 32
    torch.testing.assert_close(refl(f), per(ext)[..., :17, :17])


def test_dirichlet_vcycle_sees_zero_boundary() -> None:
    """With zero padding, the operator is linear and vanishes on zero input on every level."""
    torch.manual_seed(0)
    cyc = VCycle(2, 4, "zeros").double()
    f = torch.randn(2, 2, 31, 31, dtype=torch.float64)
    g = torch.randn(2, 2, 31, 31, dtype=torch.float64)
    torch.testing.assert_close(cyc(2 * f - g), 2 * cyc(f) - cyc(g))


def test_mgno_gradcheck_and_shapes() -> None:
    torch.manual_seed(0)
    net = MgNO(1, 1, channels=2, depth=2, levels=3).double()
    x = torch.randn(2, 1, 15, 15, dtype=torch.float64, requires_grad=True)
    assert net(x).shape == (2, 1, 15, 15)
    assert torch.autograd.gradcheck(lambda t: net(t[:, :, :7, :7]), (x[:, :, :7, :7],))


def test_levels_check_and_bad_input() -> None:
    assert mg_levels_ok(31, 4) and not mg_levels_ok(32, 4)
    assert mg_levels_ok(32, 4, "circular") and not mg_levels_ok(31, 4, "circular")
    with pytest.raises(ValueError, match="grid size"):
        VCycle(1, 4)(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="grid size"):
        VCycle(1, 3, "circular")(torch.randn(1, 1, 15, 15))
    with pytest.raises(ValueError, match="padding"):
        VCycle(1, 2, "replicate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="f must"):
        VCycle(2, 2)(torch.randn(1, 1, 7, 7))
    with pytest.raises(ValueError, match="x must"):
        MgNO(1, 1, channels=2, levels=2)(torch.randn(1, 2, 7, 7))
    with pytest.raises(ValueError, match="1 channel"):
        classical_vcycle_weights(VCycle(2, 2))
