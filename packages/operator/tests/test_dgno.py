"""DGNO pieces: Wendland CSRBF, ball quadrature, weak residuals, MultiONet gradients, DGNO."""

from __future__ import annotations

import math

import pytest
import sympy
import torch

from torchloom.operator.dgno import (
    ACTIVATIONS,
    DGNO,
    MultiONet,
    TestFunctions,
    ball_quadrature,
    darcy_weak_residual,
    dgno_inverse,
    dgno_loss,
    flux_weak_residual,
    grid_lookup,
    wendland,
    wendland_order,
)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_wendland_compact_support_and_c4_smoothness(d: int) -> None:
    lo = wendland_order(d)
    assert lo == d // 2 + 3
    r = sympy.symbols("r")
    phi = (1 - r) ** (lo + 2) * ((lo**2 + 4 * lo + 3) * r**2 + (3 * lo + 6) * r + 3) / 3
    # matches the torch implementation inside the support, zero outside
    rr = torch.linspace(0, 1.5, 31, dtype=torch.float64)
    want = torch.tensor([float(phi.subs(r, v)) if v < 1 else 0.0 for v in rr.tolist()])
    torch.testing.assert_close(wendland(rr, d), want.double())
    assert float(wendland(torch.tensor([0.0]), d)) == 1.0
    # C^4 across r = 1 (derivatives 0..4 vanish there) ...
    for k in range(5):
        assert sympy.diff(phi, r, k).subs(r, 1) == 0
    assert sympy.diff(phi, r, lo + 2).subs(r, 1) != 0  # ... and not C^∞
    # ... and C^4 as a radial function at the centre: odd derivatives 1 and 3 vanish at r = 0
    assert sympy.diff(phi, r, 1).subs(r, 0) == 0
    assert sympy.diff(phi, r, 3).subs(r, 0) == 0
    # strictly positive inside, decreasing
    inside = wendland(torch.linspace(0, 0.999, 50, dtype=torch.float64), d)
    assert torch.all(inside > 0) and torch.all(inside.diff() < 0)


def test_test_function_gradient_matches_autograd() -> None:
    centers = torch.tensor([[0.4, 0.5], [0.6, 0.3]], dtype=torch.float64)
    tf = TestFunctions.make(centers, 0.2)
    x = tf.points.clone().requires_grad_(True)
    r = (x - centers[:, None]).norm(dim=-1) / 0.2
    phi = wendland(r, 2)
    (g,) = torch.autograd.grad(phi.sum(), x)
    torch.testing.assert_close(tf.phi, phi.detach())
    inner = r.detach() > 1e-8  # the centre node (if any) has an undefined autograd norm
    torch.testing.assert_close(tf.grad_phi[inner], g[inner])


def test_ball_quadrature_integrates_polynomials() -> None:
    pts, w = ball_quadrature(2, 6, 16)
    assert math.isclose(float(w.sum()), math.pi, rel_tol=1e-12)
    x, y = pts[:, 0], pts[:, 1]
    assert math.isclose(float((w * x**2).sum()), math.pi / 4, rel_tol=1e-12)
    assert math.isclose(float((w * x**2 * y**2).sum()), math.pi / 24, rel_tol=1e-12)
    assert abs(float((w * x**3 * y).sum())) < 1e-14
    p1, w1 = ball_quadrature(1, 5)
    assert math.isclose(float((w1 * p1[:, 0] ** 4).sum()), 2 / 5, rel_tol=1e-12)


def _manufactured(x: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, ...]:
    """a = 1 + x² + y, u = sin πx sin πy (+ eps·perturbation), f = −∇·(a∇u_exact)."""
    x = x.clone().requires_grad_(True)
    a = 1 + x[..., 0] ** 2 + x[..., 1]
    u = torch.sin(math.pi * x[..., 0]) * torch.sin(math.pi * x[..., 1])
    (gu,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    flux = a[..., None] * gu
    div = sum(
        torch.autograd.grad(flux[..., i].sum(), x, retain_graph=True)[0][..., i] for i in range(2)
    )
    f = -div
    pert = eps * torch.sin(2 * math.pi * x[..., 0]) * torch.sin(math.pi * x[..., 1])
    (gp,) = torch.autograd.grad(pert.sum(), x) if eps else (torch.zeros_like(x),)
    return a.detach(), (gu + gp).detach(), f.detach()


def test_weak_residual_vanishes_for_the_exact_solution() -> None:
    tf = TestFunctions.interior_grid(5, 0.15, n_radial=8, n_angular=24)
    a, gu, f = _manufactured(tf.points)
    res = darcy_weak_residual(a[None], gu[None], f[None], tf)
    scale = (tf.weights * tf.phi * f.abs()).sum(-1)
    assert res.shape == (1, 25)
    assert float((res[0].abs() / scale).max()) < 1e-7
    a, gp, f = _manufactured(tf.points, eps=0.05)
    bad = darcy_weak_residual(a[None], gp[None], f[None], tf)
    assert float((bad[0].abs() / scale).max()) > 1e-2


def _explicit_multionet(net: MultiONet, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    hb, ht, out = beta, x, 0.0
    for lb, lt, wk in zip(net.branch.layers, net.trunk.layers, net.w):
        hb, ht = torch.tanh(lb(hb)), torch.tanh(lt(ht))
        out = out + wk * (hb[:, None, :] * ht[None]).sum(-1)
    return out / len(net.w) + net.bias  # type: ignore[return-value]


def test_multionet_formula_and_forward_mode_gradient() -> None:
    torch.manual_seed(0)
    net = MultiONet(5, 2, width=8, depth=3).double()
    with torch.no_grad():
        net.w.copy_(torch.tensor([0.5, 1.5, -1.0]))
        net.bias.fill_(0.3)
    beta = torch.randn(4, 5, dtype=torch.float64)
    x = torch.rand(7, 2, dtype=torch.float64, requires_grad=True)
    u, g = net.value_and_grad(beta, x)
    torch.testing.assert_close(u, _explicit_multionet(net, beta, x))
    assert g is not None
    for b in range(4):
        (want,) = torch.autograd.grad(u[b].sum(), x, retain_graph=True)
        torch.testing.assert_close(g[b], want)
    # differentiable w.r.t. the parameters through the forward-mode gradient
    assert torch.autograd.gradcheck(
        lambda w: MultiONet.value_and_grad(net, beta[:1], x.detach()[:2])[1] * w,
        (torch.ones(1, dtype=torch.float64, requires_grad=True),),
    )


def test_dgno_solution_vanishes_on_boundary_and_gradient_is_exact() -> None:
    torch.manual_seed(0)
    model = DGNO(5, latent=3, width=8, depth=2).double()
    beta = torch.randn(2, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    edge = torch.cat(
        [torch.stack([t, 0 * t], 1), torch.stack([t, 0 * t + 1], 1), torch.stack([0 * t, t], 1)]
    )
    assert float(model.solution(beta, edge)[0].detach().abs().max()) < 1e-14
    x = torch.rand(9, 2, dtype=torch.float64, requires_grad=True)
    u, g = model.solution(beta, x, with_grad=True)
    assert g is not None
    (want,) = torch.autograd.grad(u[1].sum(), x)
    torch.testing.assert_close(g[1], want)
    a = model.coefficient(beta, x)
    assert torch.all((a > 1.0) & (a < 10.0))


def test_grid_lookup_returns_the_node_value() -> None:
    field = torch.arange(16.0).reshape(1, 4, 4)
    x = torch.tensor([[0.2, 0.4], [0.8, 0.2], [0.01, 0.99]])
    torch.testing.assert_close(
        grid_lookup(field, x), torch.tensor([[field[0, 0, 1], field[0, 3, 0], field[0, 0, 3]]])
    )


def test_training_drives_the_weak_residual_down_and_inverse_runs() -> None:
    torch.manual_seed(0)
    n = 7
    a = 1 + 9 * torch.rand(4, n, n, dtype=torch.float64)
    model = DGNO(n, latent=4, width=16, depth=2).double()
    tf = TestFunctions.interior_grid(3, 0.2, n_radial=3, n_angular=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(dgno_loss(model, a, tf)["pde"].detach())
    for _ in range(30):
        loss = dgno_loss(model, a, tf)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(dgno_loss(model, a, tf)["pde"].detach()) < 0.2 * first
    x_obs = torch.rand(5, 2, dtype=torch.float64)
    u_obs = model(a[:2], x_obs).detach()
    beta = dgno_inverse(model, x_obs, u_obs, tf, noise_std=1e-3, steps=5, restarts=2)
    assert beta.shape == (2, 4) and all(p.requires_grad for p in model.parameters())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="d must be"):
        wendland_order(0)
    with pytest.raises(ValueError, match="d must be 1 or 2"):
        ball_quadrature(3)
    with pytest.raises(ValueError, match="radius"):
        TestFunctions.interior_grid(3, 0.6)
    with pytest.raises(ValueError, match="centers"):
        TestFunctions.make(torch.rand(3), 0.1)
    model = DGNO(5, latent=3, width=8, depth=2)
    with pytest.raises(ValueError, match="a must have shape"):
        model.encode(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="x must end"):
        model.dec_u(torch.rand(2, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match="u_obs"):
        dgno_inverse(
            model,
            torch.rand(4, 2),
            torch.rand(2, 3),
            TestFunctions.interior_grid(2, 0.2),
            noise_std=0.1,
        )
    with pytest.raises(ValueError, match="x_obs"):
        dgno_loss(
            model, torch.rand(2, 5, 5), TestFunctions.interior_grid(2, 0.2), u_obs=torch.rand(2, 3)
        )


def test_flux_weak_residual_equals_primal_form_for_the_exact_flux() -> None:
    tf = TestFunctions.random_interior(7, 0.12, generator=torch.Generator().manual_seed(1))
    assert torch.all((tf.centers > 0.12 - 1e-12) & (tf.centers < 0.88 + 1e-12))
    a, gu, f = _manufactured(tf.points)
    s = a[..., None] * gu
    torch.testing.assert_close(
        flux_weak_residual(s[None], f[None], tf),
        darcy_weak_residual(a[None], gu[None], f[None], tf),
    )
    scale = (tf.weights * tf.phi * f.abs()).sum(-1)
    assert float((flux_weak_residual(s[None], f[None], tf)[0].abs() / scale).max()) < 1e-7


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_multionet_activations_forward_mode_gradient(act: str) -> None:
    torch.manual_seed(0)
    net = MultiONet(3, 2, width=8, depth=3, activation=act, branch_activation="silu_id").double()
    with torch.no_grad():
        net.w.copy_(torch.tensor([0.5, 1.5, -1.0]))
    beta = torch.randn(2, 3, dtype=torch.float64)
    x = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    u, g = net.value_and_grad(beta, x)
    assert g is not None
    for b in range(2):
        (want,) = torch.autograd.grad(u[b].sum(), x, retain_graph=True)
        torch.testing.assert_close(g[b], want)
    with pytest.raises(ValueError, match="activation"):
        MultiONet(3, 2, activation="relu")


def test_mixed_dgno_flux_and_training() -> None:
    torch.manual_seed(0)
    n = 7
    a = 1 + 9 * torch.rand(4, n, n, dtype=torch.float64)
    model = DGNO(n, latent=4, width=16, depth=2, mixed=True, activation="tanh_sin").double()
    tf = TestFunctions.interior_grid(3, 0.2, n_radial=3, n_angular=8)
    beta = model.encode(a)
    assert model.flux(beta, tf.points).shape == (4, *tf.points.shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(dgno_loss(model, a, tf)["pde"].detach())
    for _ in range(30):
        loss = dgno_loss(model, a, tf)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(dgno_loss(model, a, tf)["pde"].detach()) < 0.2 * first
    with pytest.raises(ValueError, match="mixed"):
        DGNO(n, latent=4, width=8, depth=2).flux(beta, tf.points)
