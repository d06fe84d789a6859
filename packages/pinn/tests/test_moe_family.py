"""Hard-constraint MoE over a family of instances: batching, implicit gradients, references."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from torchloom.core.testing import assert_central_differences
from torchloom.pinn.moe import Burgers, DiffusionSorption, ReactionDiffusion
from torchloom.pinn.moe_family import (
    ConditionedMLP,
    FamilyHardConstraintMoE,
    FamilySoftPINN,
    ReactionDiffusionFamily,
)

FAM = ReactionDiffusionFamily(ReactionDiffusion(nu=1.0, rho=5.0), n_sensors=8)


def _inputs(
    m: FamilyHardConstraintMoE, B: int, seed: int = 0, n_per_expert: int = 8, n_ic: int = 8
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    coef = FAM.sample(B, g)
    xi = (torch.arange(n_ic, dtype=torch.float64) + 0.5) / n_ic * 2 * math.pi
    ic = torch.stack([xi, torch.zeros_like(xi)], -1)
    pts = m.sample_points(n_per_expert, g)
    bc_t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    return FAM.features(coef), pts, ic, FAM.initial(xi, coef), bc_t


def _model(K: int = 2, N: int = 4, **kw: Any) -> FamilyHardConstraintMoE:
    torch.manual_seed(0)
    return FamilyHardConstraintMoE(
        FAM.problem, FAM.n_sensors, K, N, width=8, depth=2, **kw
    ).double()


@pytest.mark.parametrize("initial_rows", ["global", "local"])
def test_batched_solve_equals_each_instance_alone(initial_rows: str) -> None:
    m = _model(K=2, N=4, lm_iter=60, initial_rows=initial_rows)
    feats, pts, ic, u_ic, bc_t = _inputs(m, 3)
    with torch.no_grad():
        w = m.solve(feats, pts, ic, u_ic, bc_t)
        for b in range(3):
            wb = m.solve(feats[b : b + 1], pts, ic, u_ic[b : b + 1], bc_t)
            torch.testing.assert_close(w[b : b + 1], wb, atol=1e-8, rtol=1e-7)
        # and the instances really differ (the basis is conditioned on the features)
        assert float((w[0] - w[1]).abs().max()) > 1e-3


def test_solve_is_the_least_squares_minimiser_of_every_constraint() -> None:
    """Each (instance, expert) solution reaches SciPy's least-squares cost on its own rows."""
    from scipy.optimize import least_squares

    m = _model(K=2, N=4, lm_iter=100)
    feats, pts, ic, u_ic, bc_t = _inputs(m, 2, seed=3)
    with torch.no_grad():
        w = m.solve(feats, pts, ic, u_ic, bc_t).reshape(-1, 4)
        aux = m.constraint_inputs(feats, pts, ic, u_ic, bc_t)
    for e in range(w.shape[0]):
        sub = tuple(a[e : e + 1] for a in aux)

        def f(x: np.ndarray, sub: tuple[torch.Tensor, ...] = sub) -> np.ndarray:
            out: np.ndarray = m.constraint_residual(torch.from_numpy(x)[None], *sub)[0].numpy()
            return out

        ref = least_squares(f, np.zeros(4), xtol=1e-15, ftol=1e-15, gtol=1e-15)
        cost = 0.5 * float((m.constraint_residual(w[e : e + 1], *sub) ** 2).sum())
        assert cost == pytest.approx(ref.cost, rel=1e-7, abs=1e-12)


def _jacobian_inputs(m: FamilyHardConstraintMoE) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    E, P, Q, T, N = 3, 5, 4, 3, m.N
    aux = [torch.randn(E, P, N, generator=g, dtype=torch.float64) for _ in range(4)]
    aux += [torch.randn(E, Q, N, generator=g, dtype=torch.float64)]
    aux += [torch.randn(E, Q, generator=g, dtype=torch.float64)]
    aux += [torch.randn(E, T, N, generator=g, dtype=torch.float64) for _ in range(4)]
    aux += [torch.randn(E, 2 * T, generator=g, dtype=torch.float64)]
    w = 0.3 * torch.rand(E, N, generator=g, dtype=torch.float64) + 0.2  # u > 0 for sorption
    aux[0] = aux[0].abs()
    return w, tuple(aux)


@pytest.mark.parametrize(
    "problem", [ReactionDiffusion(), Burgers(), DiffusionSorption()], ids=["rd", "burgers", "ds"]
)
def test_analytic_jacobian_matches_autograd(
    problem: ReactionDiffusion | Burgers | DiffusionSorption,
) -> None:
    m = FamilyHardConstraintMoE(problem, 3, n_experts=1, n_basis=4).double()
    w, aux = _jacobian_inputs(m)
    J = m.constraint_jacobian(w, *aux)
    for e in range(w.shape[0]):

        def f(we: torch.Tensor, e: int = e) -> torch.Tensor:
            return m.constraint_residual(we[None], *(a[e : e + 1] for a in aux))[0]

        Je = torch.autograd.functional.jacobian(f, w[e])
        torch.testing.assert_close(J[e], Je)


def test_implicit_gradient_matches_finite_differences() -> None:
    m = _model(K=2, N=3, lm_iter=200, lm_tol=1e-14)
    feats, pts, ic, u_ic, bc_t = _inputs(m, 2, seed=5, n_per_expert=6, n_ic=4)
    probe = torch.tensor([[0.5, 0.3], [4.0, 0.7]], dtype=torch.float64)

    def loss() -> torch.Tensor:
        w = m.solve(feats, pts, ic, u_ic, bc_t)
        return (m.evaluate(probe, feats, w) ** 2).sum() + (w**2).sum()

    # LM accepts steps by cost, so w is resolved to ≈ √(machine ε): the loss is noisy at
    # ≈ 1e-9 and the steps must be large enough (central-difference bias ≈ 1e-6 here)
    for P in (m.net.inp.weight, m.net.cond.weight):
        assert_central_differences(loss, P, [(0, 0), (3, 1)], eps=1e-3, atol=1e-5)


def test_conditioned_mlp_derivatives_match_autograd() -> None:
    torch.manual_seed(0)
    net = ConditionedMLP(2, 5, 3, width=7, depth=3).double()
    p = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 5, dtype=torch.float64)
    u, du, d2u = net(p, f)
    assert du is not None and d2u is not None
    for n in range(3):
        (g,) = torch.autograd.grad(u[..., n].sum(), p, create_graph=True)
        torch.testing.assert_close(du[..., n, :], g)
        for d in range(2):
            (h,) = torch.autograd.grad(g[..., d].sum(), p, retain_graph=True)
            torch.testing.assert_close(d2u[..., n, d], h[..., d])
    # the features act like extra inputs: another instance, another function
    u2, _, _ = net(p, f.flip(0), derivatives=False)
    assert float((u2 - u).detach().abs().max()) > 1e-3


def test_soft_pinn_residual_matches_autograd() -> None:
    torch.manual_seed(0)
    model = FamilySoftPINN(FAM.problem, FAM.n_sensors, width=8, depth=2).double()
    g = torch.Generator().manual_seed(2)
    coef = FAM.sample(2, g)
    feats = FAM.features(coef)
    pts = torch.rand(2, 5, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [2 * math.pi, 1.0], dtype=torch.float64
    )
    xi = torch.linspace(0, 6, 4, dtype=torch.float64)
    ic = torch.stack([xi, torch.zeros_like(xi)], -1)
    bc_t = torch.linspace(0, 1, 3, dtype=torch.float64)
    got = model.losses(feats, pts, ic, FAM.initial(xi, coef), bc_t)["pde"]
    r = []
    for b in range(2):
        q = pts[b].clone().requires_grad_(True)
        u = model(q, feats[b : b + 1])[0]
        (du,) = torch.autograd.grad(u.sum(), q, create_graph=True)
        (dxx,) = torch.autograd.grad(du[:, 0].sum(), q)
        r.append(FAM.problem.residual(u, du[:, 1], dxx[:, 0]))
    torch.testing.assert_close(got, (torch.cat(r) ** 2).mean())


def test_family_sampling_and_features() -> None:
    fam = ReactionDiffusionFamily(n_modes=3, amplitude=0.1, mean_range=(0.2, 0.4))
    coef = fam.sample(500, torch.Generator().manual_seed(0))
    assert coef.shape == (500, 7)
    assert float(coef[:, 0].min()) >= 0.2 and float(coef[:, 0].max()) <= 0.4
    k = torch.arange(1, 4, dtype=torch.float64).repeat(2)
    assert bool(((coef[:, 1:] * k).abs() <= 0.1 + 1e-12).all())
    torch.testing.assert_close(fam.features(coef), fam.initial(fam.sensors(), coef))
    # the spatial mean of u₀ is m
    x = 2 * math.pi * torch.arange(64, dtype=torch.float64) / 64
    torch.testing.assert_close(fam.initial(x, coef[:5]).mean(1), coef[:5, 0])


def test_reference_constant_instance_is_the_logistic_ode() -> None:
    fam = ReactionDiffusionFamily(ReactionDiffusion(nu=1.0, rho=5.0))
    coef = torch.tensor([0.3, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    _, t, u = fam.reference(coef, nx=16, nt=200)
    e = np.exp(5.0 * t)
    np.testing.assert_allclose(u, (0.3 * e / (1 - 0.3 + 0.3 * e))[:, None] * np.ones((1, 16)))


def test_reference_pure_diffusion_mode_decays_exactly() -> None:
    fam = ReactionDiffusionFamily(ReactionDiffusion(nu=0.7, rho=0.0), n_modes=2)
    coef = torch.tensor([0.0, 0.0, 0.05, 0.0, 0.0], dtype=torch.float64)  # 0.05 cos 2x
    x, t, u = fam.reference(coef, nx=32, nt=50)
    exact = 0.05 * np.exp(-0.7 * 4 * t)[:, None] * np.cos(2 * x)[None]
    np.testing.assert_allclose(u, exact, atol=1e-13)


def test_reference_converges_in_time() -> None:
    coef = FAM.sample(1, torch.Generator().manual_seed(4))[0]
    _, _, u1 = FAM.reference(coef, nx=64, nt=250)
    _, _, u2 = FAM.reference(coef, nx=64, nt=1000)
    # Strang splitting is second order: 4× the steps → ≈16× smaller error
    err1 = np.abs(u1[-1] - u2[-1]).max()
    _, _, u3 = FAM.reference(coef, nx=64, nt=500)
    err2 = np.abs(u3[-1] - u2[-1]).max()
    assert err1 < 1e-4
    # second order against the finer run: (1/250² − 1/1000²) / (1/500² − 1/1000²) = 5
    assert 4.0 < err1 / err2 < 6.0


def test_bad_input() -> None:
    m = _model()
    feats, pts, ic, u_ic, bc_t = _inputs(m, 2)
    with pytest.raises(ValueError, match="features"):
        m.solve(feats[:, :3], pts, ic, u_ic, bc_t)
    with pytest.raises(ValueError, match="features"):
        m.evaluate(pts[0], feats[0], torch.zeros(2, 2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="u_ic"):
        m.solve(feats, pts, ic, u_ic[:1], bc_t)
    with pytest.raises(ValueError, match="pde_pts"):
        m.solve(feats, pts[0], ic, u_ic, bc_t)
    with pytest.raises(ValueError, match="w must"):
        m.evaluate(pts[0], feats, torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="initial_rows"):
        _model(initial_rows="both")
    local = _model(initial_rows="local")
    with pytest.raises(ValueError, match="ic_pts per slab"):
        local.solve(feats, pts, ic[:3], u_ic[:, :3], bc_t)
    with pytest.raises(ValueError, match="coef"):
        FAM.initial(ic[:, 0], torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="features"):
        ConditionedMLP(2, 4, 3).double()(pts[:1], torch.zeros(2, 4, dtype=torch.float64))
    soft = FamilySoftPINN(FAM.problem, FAM.n_sensors).double()
    with pytest.raises(ValueError, match="features"):
        soft(pts[0], feats[:, 1:])


def test_family_solve_and_soft_pinn_match_cpu(device: torch.device) -> None:
    from torchloom.core.testing import assert_matches_cpu

    m = _model(K=2, N=4, lm_iter=10)
    feats, pts, ic, u_ic, bc_t = _inputs(m, 2)

    def solve_and_evaluate(
        m: FamilyHardConstraintMoE,
        feats: torch.Tensor,
        pts: torch.Tensor,
        ic: torch.Tensor,
        u_ic: torch.Tensor,
        bc_t: torch.Tensor,
    ) -> torch.Tensor:
        return m.evaluate(pts[0], feats, m.solve(feats, pts, ic, u_ic, bc_t))

    args = [m, feats, pts, ic, u_ic, bc_t]
    assert_matches_cpu(solve_and_evaluate, args, device, atol=1e-7, rtol=1e-5)
    soft = FamilySoftPINN(FAM.problem, FAM.n_sensors, width=8, depth=2).double()
    assert_matches_cpu(lambda s, p, f: s(p, f), [soft, pts[0], feats], device)
