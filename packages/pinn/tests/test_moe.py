"""Hard-constraint mixture of experts: solver, implicit gradients, basis derivatives, reference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from torchloom.core.testing import assert_central_differences
from torchloom.pinn.moe import (
    BatchedMLP,
    Burgers,
    DiffusionSorption,
    HardConstraintMoE,
    Problem,
    ReactionDiffusion,
    boundary_misfit,
    burgers_reference,
    hard_constraint_solve,
    levenberg_marquardt,
    reaction_diffusion_reference,
)


def _F(w: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    Aw = torch.einsum("krn,kn->kr", A, w)
    return Aw + 0.3 * Aw**2 - b


def _J(w: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    Aw = torch.einsum("krn,kn->kr", A, w)
    return A * (1 + 0.6 * Aw)[..., None]


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(3, 7, generator=g, dtype=torch.float64)
    return A, b


def _assert_basis_gradient_matches_finite_differences(
    m: HardConstraintMoE, loss: Callable[[], torch.Tensor], eps: float
) -> None:
    """The autograd gradient of ``loss`` in two basis weights equals central differences."""
    assert_central_differences(loss, m.basis.weights[1], [(0, 0, 0), (0, 5, 3)], eps)


def test_lm_matches_scipy_least_squares() -> None:
    A, b = _problem()
    w = levenberg_marquardt(_F, torch.zeros(3, 4, dtype=torch.float64), A, b, max_iter=100)
    # the analytic-Jacobian path reaches the same minimiser
    wj = levenberg_marquardt(_F, torch.zeros(3, 4, dtype=torch.float64), A, b, max_iter=100, jac=_J)
    torch.testing.assert_close(wj, w)
    for k in range(3):
        ref = least_squares(
            lambda x, k=k: _F(torch.from_numpy(x)[None], A[k : k + 1], b[k : k + 1])[0].numpy(),
            np.zeros(4),
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
        )
        cost = 0.5 * float((_F(w[k : k + 1], A[k : k + 1], b[k : k + 1]) ** 2).sum())
        assert cost == pytest.approx(ref.cost, rel=1e-8, abs=1e-12)


def test_implicit_gradient_equals_finite_differences() -> None:
    A, b = _problem(1)
    A.requires_grad_(True)
    b.requires_grad_(True)
    c = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w0 = torch.zeros(3, 4, dtype=torch.float64)

    def loss(A_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        w = hard_constraint_solve(_F, w0, A_, b_, max_iter=100, tol=1e-13)
        return (w * c).sum()

    gA, gb = torch.autograd.grad(loss(A, b), (A, b))
    # the residual is not zero at the optimum: the exact IFT Hessian includes Σ r_i ∇²r_i
    eps = 1e-6
    for idx in [(0, 0, 0), (2, 6, 1)]:
        Ap, Am = A.detach().clone(), A.detach().clone()
        Ap[idx] += eps
        Am[idx] -= eps
        fd = (loss(Ap, b.detach()) - loss(Am, b.detach())) / (2 * eps)
        assert float(gA[idx]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)
    for idx in [(0, 0), (2, 5)]:
        bp, bm = b.detach().clone(), b.detach().clone()
        bp[idx] += eps
        bm[idx] -= eps
        fd = (loss(A.detach(), bp) - loss(A.detach(), bm)) / (2 * eps)
        assert float(gb[idx]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_implicit_gradient_equals_unrolled_for_zero_residual() -> None:
    # square, consistent system: F(w*) = 0, where IFT and unrolled Newton agree exactly
    g = torch.Generator().manual_seed(3)
    A = torch.eye(4, dtype=torch.float64) + 0.2 * torch.randn(
        2, 4, 4, generator=g, dtype=torch.float64
    )
    b = (0.3 * torch.randn(2, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    A.requires_grad_(True)
    c = torch.randn(2, 4, generator=g, dtype=torch.float64)
    w = hard_constraint_solve(
        _F, torch.zeros(2, 4, dtype=torch.float64), A, b, max_iter=100, tol=1e-14
    )
    gA, gb = torch.autograd.grad((w * c).sum(), (A, b))
    with torch.no_grad():
        wu = w.detach().clone()
    for _ in range(40):  # unrolled Newton from the solution: derivative of the fixed point
        J = torch.func.vmap(torch.func.jacfwd(lambda x, a, bb: _F(x[None], a[None], bb[None])[0]))(
            wu, A, b
        )
        wu = wu - torch.linalg.solve(J, _F(wu, A, b).unsqueeze(-1)).squeeze(-1)
    uA, ub = torch.autograd.grad((wu * c).sum(), (A, b))
    torch.testing.assert_close(gA, uA, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gb, ub, rtol=1e-6, atol=1e-9)


def test_batched_mlp_derivatives_match_autograd() -> None:
    torch.manual_seed(0)
    net = BatchedMLP(3, 2, 5, width=8, depth=2).double()
    x = torch.rand(3, 6, 2, dtype=torch.float64)
    _u, d1, d2 = net(x)
    assert d1 is not None and d2 is not None

    def single(k: int, p: torch.Tensor) -> torch.Tensor:
        xx = x.clone()
        xx[k, 0] = p
        return net(xx, derivatives=False)[0][k, 0]

    for k in range(3):
        p = x[k, 0]
        jac = torch.autograd.functional.jacobian(lambda q, k=k: single(k, q), p)  # (N, D)
        hes = torch.stack(
            [
                torch.autograd.functional.hessian(lambda q, j=j, k=k: single(k, q)[j], p)
                for j in range(5)
            ]
        )
        torch.testing.assert_close(d1[k, 0], jac)
        torch.testing.assert_close(d2[k, 0], torch.diagonal(hes, dim1=1, dim2=2))


def test_reference_is_second_order_in_time() -> None:
    pb = ReactionDiffusion(nu=1.0, rho=5.0, t_end=0.5)
    _, _, fine = reaction_diffusion_reference(pb, 64, 1600)
    errs = [
        np.abs(reaction_diffusion_reference(pb, 64, n)[2][-1] - fine[-1]).max() for n in (25, 50)
    ]
    assert 3.0 < errs[0] / errs[1] < 5.0  # Strang splitting: order 2
    assert (
        abs(
            fine[0]
            - np.exp(-((np.arange(64) * 2 * np.pi / 64 - np.pi) ** 2) / (2 * (np.pi / 4) ** 2))
        ).max()
        == 0
    )


def test_linear_constraint_equals_least_squares() -> None:
    # ρ = 0 makes the constraint linear in w: the LM solution is the least-squares solution
    torch.manual_seed(0)
    m = HardConstraintMoE(
        ReactionDiffusion(rho=0.0), n_experts=2, n_basis=6, width=8, lm_iter=60
    ).double()
    pde, ic, bc_t = m.sample_constraint_points(20, 5, 4, torch.Generator().manual_seed(0))
    w = m.solve(pde, ic, bc_t)
    _phi, phi_t, _, phi_xx = m.basis_terms(pde)
    phi_ic = m.basis_terms(ic)[0]
    lft = torch.stack([torch.zeros(4, dtype=torch.float64), bc_t], 1)
    rgt = torch.stack([torch.full((4,), 2 * np.pi, dtype=torch.float64), bc_t], 1)
    bl, _, blx, _ = m.basis_terms(lft)
    br, _, brx, _ = m.basis_terms(rgt)
    u_ic = m.problem.initial(ic[:, 0])
    s, sb = m.ic_weight / np.sqrt(5), m.bc_weight / np.sqrt(4)
    for k in range(2):  # every expert: its own PDE rows, the shared initial/boundary rows
        A = torch.cat(
            [
                (phi_t[k] - phi_xx[k]) / np.sqrt(20),
                phi_ic * s,
                (bl - br) * sb,
                (blx - brx) * sb,
                m.ridge * torch.eye(6, dtype=torch.float64),
            ]
        ).detach()
        rhs = torch.cat([torch.zeros(20), u_ic * s, torch.zeros(8 + 6)]).double()
        ref = torch.linalg.lstsq(A, rhs.unsqueeze(-1)).solution.squeeze(-1)
        torch.testing.assert_close(w[k].detach(), ref, rtol=1e-6, atol=1e-8)


def test_moe_basis_gradient_equals_finite_differences() -> None:
    # the loss of the basis network through the solves (IFT backward, shared basis, the
    # replicated initial/boundary rows) against central differences of the whole pipeline
    torch.manual_seed(1)
    m = HardConstraintMoE(Burgers(nu=0.1), n_experts=3, n_basis=4, width=6, lm_iter=40).double()
    pts = m.sample_constraint_points(8, 6, 3, torch.Generator().manual_seed(1))
    train = m.sample_constraint_points(5, 1, 1, torch.Generator().manual_seed(2))[0]

    def loss() -> torch.Tensor:
        m.w.zero_()
        out = m.losses(m.solve(*pts), train)
        return out["pde"] + out["interface"] + out["boundary"] + out["ic"]

    _assert_basis_gradient_matches_finite_differences(m, loss, eps=1e-6)


def test_burgers_reference_solves_the_pde() -> None:
    pb = Burgers(nu=0.1 / np.pi)
    x = np.linspace(-1, 1, 801)
    t = np.array([0.3 - 1e-4, 0.3, 0.3 + 1e-4])
    u = burgers_reference(pb, x, t)
    dx = x[1] - x[0]
    ut = (u[2] - u[0]) / 2e-4
    ux = np.gradient(u[1], dx)
    uxx = np.gradient(ux, dx)
    res = (ut + u[1] * ux - pb.nu * uxx)[5:-5]
    assert np.abs(res).max() < 1e-3 * np.abs(ut).max() + 1e-3
    assert np.abs(u[:, [0, -1]]).max() < 1e-10  # u(±1, t) = 0
    np.testing.assert_allclose(burgers_reference(pb, x, np.zeros(1))[0], -np.sin(np.pi * x))


def test_experts_evaluate_on_their_own_slab() -> None:
    torch.manual_seed(0)
    m = HardConstraintMoE(Burgers(), n_experts=4, n_basis=3, width=4).double()
    w = torch.randn(4, 3, dtype=torch.float64)
    pts = torch.tensor([[-0.9, 0.1], [-0.2, 0.5], [0.3, 0.2], [0.99, 0.9]], dtype=torch.float64)
    phi = m.basis_terms(pts)[0]
    torch.testing.assert_close(m.evaluate(pts, w), (phi * w).sum(-1))


def test_bad_input() -> None:
    m = HardConstraintMoE(ReactionDiffusion(), n_experts=4, n_basis=3, width=4).double()
    with pytest.raises(ValueError, match="more than the number of points"):
        m.group(torch.rand(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="same number"):
        m.group(torch.tensor([[0.1, 0.0]] * 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="leading dimension"):
        hard_constraint_solve(_F, torch.zeros(3, 4), torch.zeros(2, 7, 4), torch.zeros(3, 7))
    with pytest.raises(ValueError, match="nu"):
        ReactionDiffusion(nu=0.0)
    with pytest.raises(ValueError, match="nu"):
        Burgers(nu=-1.0)
    with pytest.raises(ValueError, match="pde_pts"):
        m.solve(torch.rand(3, 5, 2).double(), torch.rand(4, 2).double(), torch.rand(3).double())


def _constraint_inputs(
    m: HardConstraintMoE, problem: Problem
) -> tuple[torch.Tensor, list[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Weights ``(2, 5)`` and the arguments of ``constraint_residual``/``constraint_jacobian``
    for a 2-expert, 5-basis model at a few sampled points; also the left-boundary basis and
    the right-boundary basis and its x-derivative (each ``(3, 5)``)."""
    pde, ic, bc_t = m.sample_constraint_points(7, 4, 3, torch.Generator().manual_seed(0))
    phi, phi_t, phi_x, phi_xx = (a.detach() for a in m.basis_terms(pde))
    phi_ic = m.basis_terms(ic)[0].detach()
    lft = torch.stack([torch.full_like(bc_t, problem.lower[0]), bc_t], 1)
    rgt = torch.stack([torch.full_like(bc_t, problem.upper[0]), bc_t], 1)
    bl, _, blx, _ = (a.detach() for a in m.basis_terms(lft))
    br, _, brx, _ = (a.detach() for a in m.basis_terms(rgt))
    aux = [phi, phi_t, phi_x, phi_xx, phi_ic, problem.initial(ic[:, 0]), bl, blx, br, brx]
    aux = [a.unsqueeze(0).expand(2, *a.shape) if a.shape[0] != 2 else a for a in aux]
    aux.append(problem.boundary_value(bc_t).unsqueeze(0).expand(2, -1))
    w = torch.randn(2, 5, dtype=torch.float64)
    return w, aux, (bl, br, brx)


@pytest.mark.parametrize(
    "problem", [ReactionDiffusion(), Burgers(nu=0.05), DiffusionSorption()], ids=type
)
def test_analytic_constraint_jacobian_equals_autodiff(problem: Problem) -> None:
    torch.manual_seed(0)
    m = HardConstraintMoE(problem, n_experts=2, n_basis=5, width=6).double()
    w, aux, _ = _constraint_inputs(m, problem)
    J = m.constraint_jacobian(w, *aux)
    for k in range(2):
        ref = torch.autograd.functional.jacobian(
            lambda wk, k=k: m.constraint_residual(torch.cat([w[:k], wk[None], w[k + 1 :]]), *aux)[
                k
            ],
            w[k],
        )
        torch.testing.assert_close(J[k], ref)


def test_robin_constraint_rows_and_boundary_loss() -> None:
    torch.manual_seed(0)
    pb = DiffusionSorption()
    m = HardConstraintMoE(pb, n_experts=2, n_basis=5, width=6, bc_weight=1.0).double()
    w, aux, (bl, br, brx) = _constraint_inputs(m, pb)
    F = m.constraint_residual(w, *aux)
    # boundary rows: (u(0) − 1, u(1) + D u_x(1)) / √B, computed from the basis directly
    ul, ur, urx = bl @ w.T, br @ w.T, brx @ w.T
    rows = torch.cat([ul - 1.0, ur + pb.D * urx], 0).T / np.sqrt(3)
    torch.testing.assert_close(F[:, 7 + 4 : 7 + 4 + 6], rows)
    # the training loss's boundary term is the same misfit of the assembled solution
    pts = torch.tensor([[[0.1, 0.3], [0.2, 0.7]], [[0.6, 0.5], [0.9, 0.1]]], dtype=torch.float64)
    loss = m.losses(w, pts, n_boundary=3)["boundary"]
    t3 = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    L = m.basis_terms(torch.stack([torch.zeros_like(t3), t3], 1))
    Rr = m.basis_terms(torch.stack([torch.ones_like(t3), t3], 1))
    expect = ((L[0] @ w[0] - 1.0) ** 2).mean() + ((Rr[0] @ w[1] + pb.D * Rr[2] @ w[1]) ** 2).mean()
    torch.testing.assert_close(loss, expect)


def test_gauss_newton_backward_is_exact_for_zero_residual() -> None:
    # consistent square system: F(w*) = 0, so J_FᵀJ_F is the exact Hessian of ½‖F‖²
    g = torch.Generator().manual_seed(5)
    A = torch.eye(4, dtype=torch.float64) + 0.2 * torch.randn(
        2, 4, 4, generator=g, dtype=torch.float64
    )
    b = 0.3 * torch.randn(2, 4, generator=g, dtype=torch.float64)
    A.requires_grad_(True)
    c = torch.randn(2, 4, generator=g, dtype=torch.float64)
    grads = []
    for hess in ("exact", "gauss_newton"):
        w = hard_constraint_solve(
            _F, torch.zeros(2, 4, dtype=torch.float64), A, b, max_iter=100, tol=1e-14, hessian=hess
        )
        grads.append(torch.autograd.grad((w * c).sum(), A)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="hessian"):
        hard_constraint_solve(_F, torch.zeros(2, 4), A.detach(), b, hessian="newton")  # type: ignore[arg-type]


@pytest.mark.parametrize("problem", [ReactionDiffusion(), Burgers(nu=0.05)])
def test_exact_initial_condition_holds_for_any_weights(
    problem: ReactionDiffusion | Burgers,
) -> None:
    # the authors' mollifier u = u₀ + s(t) φᵀw: u(x, 0) = u₀(x) whatever the weights
    torch.manual_seed(0)
    m = HardConstraintMoE(problem, n_experts=3, n_basis=5, width=6, initial="exact").double()
    w = 10.0 * torch.randn(3, 5, dtype=torch.float64)
    x = torch.linspace(problem.lower[0], problem.upper[0], 31, dtype=torch.float64)[:-1]
    pts = torch.stack([x, torch.zeros_like(x)], 1)
    torch.testing.assert_close(m.evaluate(pts, w), problem.initial(x), rtol=0, atol=1e-14)
    later = torch.stack([x, torch.full_like(x, 0.5)], 1)
    assert float((m.evaluate(later, w) - problem.initial(x)).abs().max()) > 1e-3


@pytest.mark.parametrize("initial", ["constraint", "exact"])
def test_affine_terms_are_the_derivatives_of_the_solution(initial: str) -> None:
    # c + Bᵀw must be (u, u_t, u_x, u_xx) of evaluate() (one expert: smooth everywhere)
    torch.manual_seed(0)
    m = HardConstraintMoE(ReactionDiffusion(), n_experts=1, n_basis=4, width=6, initial=initial)  # type: ignore[arg-type]
    m = m.double()
    w = torch.randn(1, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(9, 2, generator=g, dtype=torch.float64) * torch.tensor([6.0, 1.0])
    pts.requires_grad_(True)
    u = m.evaluate(pts, w)
    (du,) = torch.autograd.grad(u.sum(), pts, create_graph=True)
    (dux,) = torch.autograd.grad(du[:, 0].sum(), pts)
    c, basis = m.terms(pts.detach())
    got = [c[:, i] + basis[i] @ w[0] for i in range(4)]
    for a, b in zip(got, [u, du[:, 1], du[:, 0], dux[:, 0]]):
        torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("problem", [ReactionDiffusion(), Burgers(nu=0.1)])
def test_exact_initial_jacobian_and_gradient(problem: ReactionDiffusion | Burgers) -> None:
    # analytic Jacobian with offsets = autodiff; basis gradient through the solve = central
    # differences (the whole pipeline with the mollified solution)
    torch.manual_seed(1)
    m = HardConstraintMoE(problem, n_experts=2, n_basis=4, width=6, lm_iter=100, initial="exact")
    m = m.double()
    pts = m.sample_constraint_points(8, 6, 3, torch.Generator().manual_seed(1))
    off, (phi, phi_t, phi_x, phi_xx) = (a for a in m.terms(pts[0]))
    w = torch.randn(2, 4, dtype=torch.float64)
    ob = torch.randn(2, 3, 4, dtype=torch.float64)
    aux = [phi, phi_t, phi_x, phi_xx, torch.zeros(2, 6, 4), torch.zeros(2, 6)]
    aux += [torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(4)]
    aux = [a.detach().double() for a in aux] + [torch.zeros(2, 3, dtype=torch.float64)]
    J = m.constraint_jacobian(w, *aux, off.detach(), ob)
    ref = torch.func.vmap(
        torch.func.jacrev(lambda wk, *a: m.constraint_residual(wk[None], *(x[None] for x in a))[0])
    )(w, *aux, off.detach(), ob)
    torch.testing.assert_close(J, ref)
    train = m.sample_constraint_points(5, 1, 1, torch.Generator().manual_seed(2))[0]

    def loss() -> torch.Tensor:
        m.w.zero_()
        out = m.losses(m.solve(*pts), train)
        return out["pde"] + out["interface"] + out["boundary"]

    # the solves converge to ‖∇‖ < 1e-10: smaller steps see that noise
    _assert_basis_gradient_matches_finite_differences(m, loss, eps=1e-5)


def test_bad_initial_mode() -> None:
    with pytest.raises(ValueError, match="initial"):
        HardConstraintMoE(Burgers(), initial="soft")  # type: ignore[arg-type]


def test_local_initial_rows_equal_per_slab_least_squares() -> None:
    # ρ = 0: linear constraint; with initial_rows="local" expert k's initial rows are the
    # initial points of its own slab only (the authors' Navier–Stokes partitioning)
    torch.manual_seed(0)
    m = HardConstraintMoE(
        ReactionDiffusion(rho=0.0),
        n_experts=2,
        n_basis=6,
        width=8,
        lm_iter=60,
        initial_rows="local",
    ).double()
    pde, ic, bc_t = m.sample_constraint_points(20, 6, 4, torch.Generator().manual_seed(0))
    w = m.solve(pde, ic, bc_t)
    _phi, phi_t, _, phi_xx = m.basis_terms(pde)
    lft = torch.stack([torch.zeros(4, dtype=torch.float64), bc_t], 1)
    rgt = torch.stack([torch.full((4,), 2 * np.pi, dtype=torch.float64), bc_t], 1)
    bl, _, blx, _ = m.basis_terms(lft)
    br, _, brx, _ = m.basis_terms(rgt)
    s, sb = m.ic_weight / np.sqrt(3), m.bc_weight / np.sqrt(4)
    for k in range(2):
        mine = ic[(ic[:, 0] >= k * np.pi) & (ic[:, 0] < (k + 1) * np.pi)]
        assert mine.shape[0] == 3
        A = torch.cat(
            [
                (phi_t[k] - phi_xx[k]) / np.sqrt(20),
                m.basis_terms(mine)[0] * s,
                (bl - br) * sb,
                (blx - brx) * sb,
                m.ridge * torch.eye(6, dtype=torch.float64),
            ]
        ).detach()
        rhs = torch.cat([torch.zeros(20), m.problem.initial(mine[:, 0]) * s, torch.zeros(14)])
        ref = torch.linalg.lstsq(A, rhs.double().unsqueeze(-1)).solution.squeeze(-1)
        torch.testing.assert_close(w[k].detach(), ref, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="initial_rows"):
        HardConstraintMoE(Burgers(), initial_rows="both")  # type: ignore[arg-type]


@pytest.mark.parametrize("problem", [ReactionDiffusion(), Burgers(), DiffusionSorption()])
def test_boundary_misfit_matches_each_boundary_condition(problem: Problem) -> None:
    """The shared boundary residuals give each problem's own condition at both ends."""
    g = torch.Generator().manual_seed(0)
    ul, uxl, ur, uxr = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    t = torch.linspace(0.0, problem.t_end, 5, dtype=torch.float64)
    gb = problem.boundary_value(t)
    if problem.boundary == "periodic":
        want = ((ul - ur) ** 2).mean() + ((uxl - uxr) ** 2).mean()
    elif isinstance(problem, DiffusionSorption):  # u = g at x = 0, u + D u_x = g at x = 1
        want = ((ul - gb[:5]) ** 2).mean() + ((ur + problem.D * uxr - gb[5:]) ** 2).mean()
    else:  # Dirichlet, the same values at both ends
        want = ((ul - gb) ** 2).mean() + ((ur - gb) ** 2).mean()
    torch.testing.assert_close(boundary_misfit(problem, ul, uxl, ur, uxr, gb), want)
