"""The finite-difference outer loss of the hard-constraint MoE (the assembled-grid residual)."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.core.testing import assert_central_differences
from torchloom.pinn.moe import (
    Burgers,
    DiffusionSorption,
    HardConstraintMoE,
    ReactionDiffusion,
    grid_derivatives,
)


def _field(nx: int, nt: int, periodic: bool) -> tuple[torch.Tensor, float, float, tuple]:
    """``u = sin(x) e^{−t} + x² t`` (periodic: without the ``x² t`` term) and its derivatives."""
    if periodic:
        dx = 2 * math.pi / nx
        x = dx * torch.arange(nx, dtype=torch.float64)
    else:
        x = torch.linspace(0.0, 2.0, nx, dtype=torch.float64)
        dx = 2.0 / (nx - 1)
    t = torch.linspace(0.0, 1.0, nt, dtype=torch.float64)
    dt = 1.0 / (nt - 1)
    T, X = torch.meshgrid(t, x, indexing="ij")
    q = 0.0 if periodic else 1.0
    u = torch.sin(X) * torch.exp(-T) + q * X**2 * T
    exact = (
        -torch.sin(X) * torch.exp(-T) + q * X**2,
        torch.cos(X) * torch.exp(-T) + q * 2 * X * T,
        -torch.sin(X) * torch.exp(-T) + q * 2 * T,
    )
    return u, dx, dt, exact


@pytest.mark.parametrize("periodic", [False, True])
def test_grid_derivatives_are_second_order(periodic: bool) -> None:
    errs = []
    for nx, nt in [(32, 16), (64, 32)]:
        u, dx, dt, exact = _field(nx, nt, periodic)
        got = grid_derivatives(u, dx, dt, periodic)
        errs.append([float((g - e).abs().max()) for g, e in zip(got, exact)])
    for coarse, fine in zip(*errs):
        assert 3.2 < coarse / fine < 4.8  # halving h quarters the error, boundary rows included


@pytest.mark.parametrize("problem", [Burgers(nu=0.1 / math.pi), DiffusionSorption()])
def test_fd_residual_of_one_expert_equals_autograd_residual_to_second_order(problem) -> None:
    torch.manual_seed(0)
    m = HardConstraintMoE(problem, n_experts=1, n_basis=4, width=8).double()
    w = torch.randn(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    errs = []
    for nx, nt in [(32, 16), (64, 32)]:
        pts, _, _ = m.fd_grid(nx, nt)
        off, basis = m.terms(pts)
        fields = [(b * w[0]).sum(-1) + off[..., i] for i, b in enumerate(basis)]
        exact = problem.pde(*fields).detach()
        errs.append(float((m.fd_residual(w, nx, nt).detach() - exact).abs().max()))
        assert errs[-1] < 0.1 * float(exact.abs().max())
    assert 3.0 < errs[0] / errs[1] < 5.0


def test_fd_residual_couples_neighbouring_experts_at_the_slab_edge() -> None:
    torch.manual_seed(0)
    pb = Burgers(nu=0.1 / math.pi)
    m = HardConstraintMoE(pb, n_experts=2, n_basis=4, width=8).double()
    w0 = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    nx, nt = 33, 8  # x_j = −1 + j/16: the slab edge x = 0 is node 16 (it belongs to expert 1)
    same = m.fd_residual(torch.stack([w0, w0]), nx, nt).detach()
    jump = torch.zeros(4, dtype=torch.float64)
    jump[0] = 0.5
    w = torch.stack([w0, w0 + jump])
    r = m.fd_residual(w, nx, nt).detach()
    alone = [
        m.fd_residual(torch.stack([v, v]), nx, nt).detach() for v in w
    ]  # each expert everywhere
    # away from the edge each node's stencil sees one expert only: its own residual
    torch.testing.assert_close(r[:, :15], alone[0][:, :15])
    torch.testing.assert_close(r[:, 17:], alone[1][:, 17:])
    torch.testing.assert_close(alone[0], same)
    # next to the edge the stencil mixes both experts: node 15 (expert 0) sees expert 1's
    # value at node 16 through u u_x and −ν u_xx, exactly the jump Δ times the stencil weights
    pts, h, _ = m.fd_grid(nx, nt)
    u = [m.evaluate(pts[:, j], w).detach() for j in (15, 16)]
    d16 = (
        m.evaluate(pts[:, 16], torch.stack([w[1], w[1]]))
        - m.evaluate(pts[:, 16], torch.stack([w[0], w[0]]))
    ).detach()
    d15 = (
        m.evaluate(pts[:, 15], torch.stack([w[0], w[0]]))
        - m.evaluate(pts[:, 15], torch.stack([w[1], w[1]]))
    ).detach()
    torch.testing.assert_close(
        r[:, 15] - alone[0][:, 15], u[0] * d16 / (2 * h) - pb.nu * d16 / h**2
    )
    torch.testing.assert_close(
        r[:, 16] - alone[1][:, 16], -u[1] * d15 / (2 * h) - pb.nu * d15 / h**2
    )
    assert float(d16.abs().mean()) > 0.05  # a real jump
    d = m.losses(w, None, outer="fd", grid=(nx, nt))
    torch.testing.assert_close(d["pde"].detach(), (r**2).mean())


def test_fd_outer_loss_gradient_matches_finite_differences() -> None:
    # the basis gradient of the FD outer loss through the solves (IFT backward) against central
    # differences of the whole pipeline (the setup of test_moe's autograd-loss check)
    torch.manual_seed(1)
    m = HardConstraintMoE(Burgers(nu=0.1), n_experts=3, n_basis=4, width=6, lm_iter=40).double()
    pts = m.sample_constraint_points(8, 6, 3, torch.Generator().manual_seed(1))
    W = m.basis.weights[1]

    def loss() -> torch.Tensor:
        m.w.zero_()
        d = m.losses(m.solve(*pts), None, outer="fd", grid=(13, 5))
        return d["pde"] + d["boundary"] + d["ic"]

    # eps: the solves converge to ‖∇‖ < 1e-10, and smaller steps see that noise
    assert_central_differences(loss, W, [(0, 0, 0), (0, 5, 3)], eps=1e-5)


def test_grid_points_are_nodes_of_their_own_slab() -> None:
    m = HardConstraintMoE(Burgers(), n_experts=4, n_basis=4, width=8).double()
    p = m.sample_grid_points(30, 33, 9, torch.Generator().manual_seed(0))
    assert p.shape == (4, 30, 2)
    nodes, _, _ = m.fd_grid(33, 9)
    flat = nodes.reshape(-1, 2)
    for k in range(4):
        d = torch.cdist(p[k], flat).min(1).values
        assert float(d.max()) == 0.0  # every point is a grid node
        assert bool((m.split(p[k]) == k).all())
        assert torch.unique(p[k], dim=0).shape[0] == 30  # without replacement
    pts, dx, _ = HardConstraintMoE(ReactionDiffusion(), n_experts=2).fd_grid(16, 4)
    assert dx == pytest.approx(2 * math.pi / 16)
    assert float(pts[..., 0].max()) < 2 * math.pi  # periodic: the right end is the left node


def test_bad_input() -> None:
    m = HardConstraintMoE(Burgers(), n_experts=4, n_basis=4, width=8).double()
    w = torch.zeros(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="outer"):
        m.losses(w, None, outer="spectral")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_pts"):
        m.losses(w, None)
    with pytest.raises(ValueError, match="n_per_expert"):
        m.sample_grid_points(100, 9, 5)
    with pytest.raises(ValueError, match="nx"):
        m.fd_grid(3, 5)
    with pytest.raises(ValueError, match="u must have shape"):
        grid_derivatives(torch.zeros(2, 8, dtype=torch.float64), 0.1, 0.1)
    with pytest.raises(ValueError, match="dx"):
        grid_derivatives(torch.zeros(4, 8, dtype=torch.float64), 0.0, 0.1)
