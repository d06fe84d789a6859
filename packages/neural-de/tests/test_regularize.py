"""Solver-heuristic regularisers (Pal et al. 2021) and the RNODE baseline."""

from __future__ import annotations

import itertools

import pytest
import torch

from torchloom.neural_de import SolverStats, odesolve
from torchloom.neural_de._tableaux import TABLEAUX
from torchloom.neural_de.regularize import (
    ExponentialDecay,
    RNODEField,
    error_regularizer,
    solver_regularizer,
    stiffness_regularizer,
)


def _solve(theta: torch.Tensor, method: str = "tsit5", sensitivity: str = "autograd", **kw):  # type: ignore[no-untyped-def]
    y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    stats = SolverStats()
    sol = odesolve(
        lambda t, y: torch.sin(theta * y) - 0.3 * y,
        y0,
        t,
        method=method,
        sensitivity=sensitivity,
        stats=stats,
        rtol=kw.pop("rtol", 1e-6),
        atol=1e-6,
        **kw,  # type: ignore[arg-type]
    )
    return sol, stats


def test_error_regularizer_is_sum_of_scaled_estimates() -> None:
    theta = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    _, stats = _solve(theta)
    expected = sum(float(e.detach()) * h for e, h in zip(stats.error_estimates, stats.step_sizes))
    assert float(error_regularizer(stats).detach()) == pytest.approx(expected, rel=1e-12)
    assert float(stiffness_regularizer(stats).detach()) == pytest.approx(
        sum(float(s.detach()) for s in stats.stiffness_estimates), rel=1e-12
    )


def test_error_estimate_one_step_hand_computation() -> None:
    """A one-step solve: E_1 = RMS(h Σ (b − b̂) k / (atol + rtol·max|y|)), by hand."""
    y0 = torch.tensor([0.4, -1.2], dtype=torch.float64)
    h = 0.05
    tab = TABLEAUX["tsit5"]
    f = lambda t, y: -2.0 * y + torch.cos(y)  # noqa: E731
    stats = SolverStats()
    odesolve(
        f,
        y0,
        torch.tensor([0.0, h], dtype=torch.float64),
        method="tsit5",
        rtol=1e-3,
        atol=1e-4,
        first_step=h,
        stats=stats,
    )
    assert stats.n_accepted == 1
    ks = []
    for i in range(7):
        g = y0 + h * sum(
            (tab.a[i][j] * ks[j] for j in range(i)), torch.zeros(2, dtype=torch.float64)
        )
        ks.append(f(None, g))
    y1 = y0 + h * sum(b * k for b, k in zip(tab.b, ks))
    err = h * sum(e * k for e, k in zip(tab.b_err, ks))  # type: ignore[arg-type]
    scale = 1e-4 + 1e-3 * torch.maximum(y0.abs(), y1.abs())
    expected = (err / scale).pow(2).mean().sqrt()
    torch.testing.assert_close(stats.error_estimates[0], expected, rtol=1e-6, atol=0.0)
    assert float(error_regularizer(stats)) == pytest.approx(float(expected) * h, rel=1e-6)


def test_regularizer_gradient_same_under_checkpoint() -> None:
    grads = []
    for sens in ("autograd", "checkpoint"):
        theta = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        sol, stats = _solve(theta, sensitivity=sens)
        loss = sol.ys[-1].pow(2).sum() + solver_regularizer(stats, 1.0, 0.1)
        (g,) = torch.autograd.grad(loss, theta)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)
    assert float(grads[0]) != 0.0


def test_stiffness_gradient_on_linear_problem() -> None:
    """For y' = λy every S_j = |λ|, so dR_S/dλ = −(number of accepted steps) for λ < 0."""
    lam = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    stats = SolverStats()
    odesolve(
        lambda t, y: lam * y,
        torch.ones(3, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        method="dopri5",
        stats=stats,
    )
    rs = stiffness_regularizer(stats)
    assert float(rs.detach()) == pytest.approx(4.0 * stats.n_accepted, rel=1e-9)
    (g,) = torch.autograd.grad(rs, lam)
    assert float(g) == pytest.approx(-stats.n_accepted, rel=1e-9)


def test_descending_error_regularizer_makes_the_solve_cheaper() -> None:
    """Gradient steps on R_E alone reduce R_E and the number of steps of the solve."""
    theta = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=2.0)
    _, first = _solve(theta.detach(), rtol=1e-7)
    r0 = float(error_regularizer(first))
    for _ in range(15):
        _, stats = _solve(theta, rtol=1e-7)
        opt.zero_grad()
        error_regularizer(stats).backward()
        opt.step()
    _, last = _solve(theta.detach(), rtol=1e-7)
    assert float(error_regularizer(last)) < r0
    assert last.nfe < first.nfe


def test_fixed_step_has_no_error_estimate() -> None:
    stats = SolverStats()
    odesolve(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="rk4", stats=stats)
    with pytest.raises(ValueError, match="R_E needs an adaptive method"):
        error_regularizer(stats)
    with pytest.raises(TypeError, match="stats must be a SolverStats"):
        error_regularizer({"nfe": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda_error"):
        solver_regularizer(stats, -1.0)


def test_exponential_decay() -> None:
    sched = ExponentialDecay(100.0, 1.0, 10)
    assert sched(0) == pytest.approx(100.0)
    assert sched(5) == pytest.approx(10.0)
    assert sched(10) == pytest.approx(1.0) == sched(50)
    values = [sched(k) for k in range(11)]
    assert all(a > b for a, b in itertools.pairwise(values))
    with pytest.raises(ValueError, match="steps"):
        ExponentialDecay(1.0, 0.1, 0)


def test_rnode_channels_on_linear_field(device: torch.device) -> None:
    """f(y) = Ay: e_J = T·‖εᵀA‖² exactly; e_K = ∫‖Ay(t)‖² dt (checked against quadrature)."""
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64, device=device)

    class Lin(torch.nn.Module):
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return y @ a.T

    field = RNODEField(Lin())
    y0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=torch.float64, device=device)
    eps = torch.randn(2, 2, dtype=torch.float64, device=device)
    field.set_noise(eps)
    t = torch.linspace(0, 2.0, 401, dtype=torch.float64, device=device)
    zs = odesolve(field, RNODEField.augment(y0), t, rtol=1e-10, atol=1e-10).ys
    y, kin, jac = RNODEField.split(zs)
    torch.testing.assert_close(jac[-1], 2.0 * (eps @ a).pow(2).sum(-1), rtol=1e-8, atol=1e-10)
    speed2 = (y @ a.T).pow(2).sum(-1)
    quad = torch.trapezoid(speed2, t, dim=0)
    torch.testing.assert_close(kin[-1], quad, rtol=1e-4, atol=1e-6)


def test_rnode_needs_noise() -> None:
    field = RNODEField(torch.nn.Identity())
    with pytest.raises(RuntimeError, match="set_noise"):
        field(torch.tensor(0.0), torch.zeros(2, 4))
    field.set_noise(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"noise has shape \(3, 2\)"):
        field(torch.tensor(0.0), torch.zeros(2, 4))
