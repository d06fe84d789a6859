"""Diffusion–sorption (PDEBench) for the hard-constraint MoE: physics, reference, rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchloom.pinn.moe import DiffusionSorption, HardConstraintMoE, diffusion_sorption_reference


def test_pde_partials_match_autograd() -> None:
    pb = DiffusionSorption()
    g = torch.Generator().manual_seed(0)
    # values on both sides of the u = 0 freeze, down to the 1e-6 scale of the singularity
    u = torch.cat(
        [
            torch.tensor([-0.3, -1e-3, 1e-5, 3e-4], dtype=torch.float64),
            torch.rand(12, generator=g, dtype=torch.float64),
        ]
    )
    args = [u] + [torch.randn(16, generator=g, dtype=torch.float64) for _ in range(3)]
    args = [a.clone().requires_grad_(True) for a in args]
    r = pb.pde(*args)
    got = pb.pde_partials(*(a.detach() for a in args))
    for a, d in zip(args, got):
        (ref,) = torch.autograd.grad(r.sum(), a, retain_graph=True, allow_unused=True)
        ref = torch.zeros_like(d) if ref is None else ref  # u_x does not enter the residual
        torch.testing.assert_close(d, ref, rtol=1e-10, atol=1e-12)


def test_retardation_is_the_freundlich_factor_frozen_below_zero() -> None:
    pb = DiffusionSorption()
    c = (1 - 0.29) / 0.29 * 2880 * 3.5e-4 * 0.874
    u = torch.tensor([0.5, 1.0, 0.0, -0.2], dtype=torch.float64)
    R, dR = pb.retardation(u)
    expect = [1 + c * (0.5 + 1e-6) ** (0.874 - 1), 1 + c * (1 + 1e-6) ** (0.874 - 1)]
    expect += [1 + c * 1e-6 ** (0.874 - 1)] * 2
    torch.testing.assert_close(R, torch.tensor(expect, dtype=torch.float64))
    assert float(dR[2]) == 0.0 and float(dR[3]) == 0.0
    # continuous across the freeze: R(0⁺) → R(0)
    Rp, _ = pb.retardation(torch.tensor([1e-14], dtype=torch.float64))
    assert float(Rp[0]) == pytest.approx(float(R[2]), rel=1e-6)


def test_manufactured_solution_has_zero_residual() -> None:
    pb = DiffusionSorption()
    x = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    tau = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    X, T = torch.meshgrid(x, tau, indexing="ij")
    # exact solution of the nonlinear PDE: the linear steady state u = 1 − a x
    u = 1.0 - 0.7 * X
    zeros = torch.zeros_like(u)
    torch.testing.assert_close(pb.pde(u, zeros, -0.7 + zeros, zeros), zeros)
    # the time rescaling: with R frozen at R₀ = R(0.4), u = 0.4 + δ e^{−k² t_final D τ / R₀} sin kx
    # is an exact solution of u_τ = t_final D / R₀ · u_xx (derivatives by autograd)
    R0 = float(pb.retardation(torch.tensor([0.4], dtype=torch.float64))[0][0])
    k = 2.0
    rate = k**2 * pb.t_final * pb.D / R0
    Xg = X.clone().requires_grad_(True)
    Tg = T.clone().requires_grad_(True)
    v = 0.4 + 0.01 * torch.exp(-rate * Tg) * torch.sin(k * Xg)
    (vt,) = torch.autograd.grad(v.sum(), Tg, create_graph=True)
    (vx,) = torch.autograd.grad(v.sum(), Xg, create_graph=True)
    (vxx,) = torch.autograd.grad(vx.sum(), Xg)
    r = pb.pde(torch.full_like(v, 0.4), vt.detach(), vx.detach(), vxx)
    assert float(r.abs().max()) < 1e-12 * float(vt.detach().abs().max()) + 1e-15
    # with R(u) itself the residual is the linearisation error, O(R'(0.4) δ / R₀) relative
    r_full = pb.pde(v.detach(), vt.detach(), vx.detach(), vxx)
    assert 1e-6 < float(r_full.abs().max()) < 0.02 * float(vt.detach().abs().max())


def _interp(nx: int, problem: DiffusionSorption, xs: np.ndarray) -> np.ndarray:
    x, _, u = diffusion_sorption_reference(problem, nx, np.linspace(0.0, problem.t_final, 6))
    return np.stack([np.interp(xs, x, ui) for ui in u[1:]])


def test_reference_converges_with_the_grid() -> None:
    pb = DiffusionSorption()
    xs = np.linspace(0.05, 0.95, 19)
    fine = _interp(512, pb, xs)
    errs = [np.abs(_interp(n, pb, xs) - fine).max() for n in (32, 64, 128)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < errs[0] / 8  # ≈ second order (≥ 1.5 over two halvings)


def test_reference_solves_the_pde_and_its_boundary_conditions() -> None:
    pb = DiffusionSorption(u0=0.05)
    t = np.linspace(0.69, 0.71, 5) * pb.t_final
    x, t, u = diffusion_sorption_reference(pb, 400, t)
    dx, dt = x[1] - x[0], (t[1] - t[0]) / pb.t_final
    u_tau = (u[3] - u[1]) / (2 * dt)
    u_xx = (u[2, :-2] - 2 * u[2, 1:-1] + u[2, 2:]) / dx**2
    r = pb.pde(*(torch.from_numpy(a) for a in (u[2, 1:-1], u_tau[1:-1], u_xx, u_xx)))
    assert float(r.abs().max()) < 2e-3 * float(np.abs(u_tau).max())
    assert u[2, 0] == pytest.approx(pb.u_left, abs=3 * dx)  # Dirichlet face at x = 0
    assert np.all(u > 0) and np.all(np.diff(u[-1]) < 0)  # monotone breakthrough profile
    # the right face u + D u_x = 0 with D tiny: u(1, t) ≈ 0 within the last half cell
    assert abs(1.5 * u[2, -1] - 0.5 * u[2, -2]) < 3 * abs(u[2, -1] - u[2, -2])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="porosity"):
        DiffusionSorption(porosity=1.2)
    with pytest.raises(ValueError, match="D"):
        DiffusionSorption(D=0.0)
    with pytest.raises(ValueError, match="t must be"):
        diffusion_sorption_reference(DiffusionSorption(), 16, np.array([0.0, 600.0]))
    with pytest.raises(ValueError, match="nx"):
        diffusion_sorption_reference(DiffusionSorption(), 1)


def test_local_boundary_rows_belong_to_the_edge_experts() -> None:
    torch.manual_seed(0)
    pb = DiffusionSorption()
    glob = HardConstraintMoE(pb, n_experts=3, n_basis=4, width=6).double()
    loc = HardConstraintMoE(pb, n_experts=3, n_basis=4, width=6, boundary_rows="local").double()
    loc.load_state_dict(glob.state_dict())
    pts = glob.sample_constraint_points(5, 6, 4, torch.Generator().manual_seed(1))
    w_glob, w_loc = glob.solve(*pts), loc.solve(*pts)
    assert not torch.allclose(w_glob, w_loc)  # fewer rows: different least-squares solutions
    B = 4
    _, basis = loc.terms(pts[0])
    lft = torch.stack([torch.zeros_like(pts[2]), pts[2]], 1)
    rgt = torch.stack([torch.ones_like(pts[2]), pts[2]], 1)
    bl, _, blx, _ = loc.basis_terms(lft)
    br, _, brx, _ = loc.basis_terms(rgt)
    phi_ic = loc.basis_terms(pts[1])[0]

    def rep(a: torch.Tensor) -> torch.Tensor:
        return a.unsqueeze(0).expand(3, *a.shape)

    args = (
        *basis,
        rep(phi_ic),
        rep(pb.initial(pts[1][:, 0])),
        rep(bl),
        rep(blx),
        rep(br),
        rep(brx),
        rep(pb.boundary_value(pts[2])),
    )
    r = loc.constraint_residual(w_loc.detach(), *args).detach()
    rb = r[:, 5 + 6 : 5 + 6 + 2 * B]
    assert float(rb[1].abs().max()) == 0.0  # the middle expert has no boundary rows
    assert float(rb[0, B:].abs().max()) == 0.0 and float(rb[2, :B].abs().max()) == 0.0
    assert float(rb[0, :B].abs().max()) > 0.0 and float(rb[2, B:].abs().max()) > 0.0
    J = loc.constraint_jacobian(w_loc.detach(), *args).detach()
    assert float(J[1, 5 + 6 : 5 + 6 + 2 * B].abs().max()) == 0.0
    with pytest.raises(ValueError, match="periodic"):
        from torchloom.pinn.moe import ReactionDiffusion

        HardConstraintMoE(ReactionDiffusion(), boundary_rows="local")
    with pytest.raises(ValueError, match="boundary_rows"):
        HardConstraintMoE(pb, boundary_rows="edge")  # type: ignore[arg-type]
