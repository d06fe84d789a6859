"""Derivative helpers, boundary constraints and the Adam → L-BFGS trainer."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.pinn.residual import (
    MLP,
    NonFiniteLossError,
    gradient,
    hard_dirichlet,
    laplacian,
    partial,
    soft_boundary_loss,
    train_pinn,
)


def test_derivatives_of_manufactured_field() -> None:
    x = torch.rand(50, 2, dtype=torch.float64, requires_grad=True)
    u = torch.sin(x[:, 0]) * torch.exp(2 * x[:, 1])
    ux = partial(u, x, (0,))
    uxy = partial(u, x, (0, 1))
    lap = laplacian(u, x)
    xs, ys = x[:, :1].detach(), x[:, 1:].detach()
    torch.testing.assert_close(ux, torch.cos(xs) * torch.exp(2 * ys))
    torch.testing.assert_close(uxy, 2 * torch.cos(xs) * torch.exp(2 * ys))
    torch.testing.assert_close(lap, 3 * torch.sin(xs) * torch.exp(2 * ys))
    # the residual of the manufactured Poisson problem −Δu = f is zero
    f = -3 * torch.sin(xs) * torch.exp(2 * ys)
    assert float((-lap - f).detach().abs().max()) < 1e-12


def test_gradient_rejects_bad_input() -> None:
    x = torch.rand(4, 2)
    with pytest.raises(ValueError, match="require grad"):
        gradient(x.sum(1), x)
    x.requires_grad_(True)
    with pytest.raises(ValueError, match="shape"):
        gradient(x, x)
    with pytest.raises(ValueError, match="dims"):
        partial(x.sum(1), x, (2,))


def test_hard_dirichlet_exact_on_boundary() -> None:
    net = MLP(1, 1, width=8, depth=2).double()
    x = torch.tensor([[0.0], [0.3], [1.0]], dtype=torch.float64)
    g = 2.0 + 3.0 * x  # u(0) = 2, u(1) = 5
    u = hard_dirichlet(net(x), x * (1 - x), g)
    assert float(u[0, 0]) == 2.0 and float(u[2, 0]) == 5.0
    with pytest.raises(ValueError, match="same shape"):
        hard_dirichlet(net(x), x[:2], g)


def test_trainer_solves_poisson_and_records_terms() -> None:
    torch.manual_seed(0)
    net = MLP(1, 1, width=16, depth=2).double()
    x = torch.linspace(0, 1, 32, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    xb = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def loss_fn() -> dict[str, torch.Tensor]:
        u = net(x)
        r = -laplacian(u, x) - math.pi**2 * torch.sin(math.pi * x)
        return {"pde": (r**2).mean(), "bc": soft_boundary_loss(net(xb), torch.zeros_like(xb))}

    hist = train_pinn(loss_fn, net.parameters(), adam_steps=100, lbfgs_steps=40, lr=1e-2)
    assert set(hist.terms) == {"pde", "bc"}
    assert hist.phase.count("adam") == 100 and "lbfgs" in hist.phase
    # L-BFGS kept iterating (did not stop early) and improved on Adam's loss
    assert hist.total[-1] < 0.05 * hist.total[99]
    err = (net(x) - torch.sin(math.pi * x)).abs().max()
    assert float(err) < 1e-2


def test_nan_term_is_reported_by_name() -> None:
    p = torch.nn.Parameter(torch.tensor(1.0))
    calls = [0]

    def loss_fn() -> dict[str, torch.Tensor]:
        calls[0] += 1
        bad = torch.sqrt(p - 2.0) if calls[0] > 3 else p**2
        return {"fit": p**2, "closure": bad}

    with pytest.raises(NonFiniteLossError, match="'closure'.*adam step 3") as err:
        train_pinn(loss_fn, [p], adam_steps=10)
    assert err.value.term == "closure" and err.value.step == 3
