"""Empirical and analytic NTK/NNGP kernels, and kernel-regime predictions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from torch import nn

from torchloom.core.testing.strategies import tensors
from torchloom.core.warnings import TorchloomWarning
from torchloom.theory import (
    NTKMLP,
    empirical_ntk,
    infinite_width_kernels,
    nngp_kernel,
    nngp_posterior,
    ntk_kernel,
    predict_gd,
)

F64 = torch.float64


def _autograd_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Reference: one backward pass per (example, output), no torch.func."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jac(x: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(x.shape[0]):
            out = model(x[i : i + 1]).reshape(-1)
            for a in range(out.numel()):
                g = torch.autograd.grad(out[a], params, retain_graph=True)
                rows.append(torch.cat([t.reshape(-1) for t in g]))
        return torch.stack(rows).reshape(x.shape[0], -1, rows[0].numel())

    j1, j2 = jac(x1), jac(x2)
    return torch.einsum("iaP,jbP->ijab", j1, j2)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_jacobian_mode_equals_ntk_vp_and_autograd(device: torch.device, arch: str) -> None:
    if arch == "mlp":
        model: nn.Module = NTKMLP(4, 16, 2, 3, activation="tanh", sigma_b2=0.1, dtype=F64)
        x1 = torch.randn(5, 4, dtype=F64)
        x2 = torch.randn(3, 4, dtype=F64)
    else:
        model = SmallCNN().to(F64)
        x1 = torch.randn(4, 1, 4, 4, dtype=F64)
        x2 = torch.randn(2, 1, 4, 4, dtype=F64)
    model = model.to(device)
    x1, x2 = x1.to(device), x2.to(device)
    k_jac = empirical_ntk(model, x1, x2, mode="jacobian")
    k_vp = empirical_ntk(model, x1, x2, mode="ntk_vp")
    ref = _autograd_ntk(model, x1, x2)
    assert k_jac.shape == ref.shape
    torch.testing.assert_close(k_jac, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(k_vp, ref, rtol=1e-10, atol=1e-10)
    tr = empirical_ntk(model, x1, x2, mode="ntk_vp", trace=True)
    torch.testing.assert_close(tr, ref.diagonal(dim1=-2, dim2=-1).mean(-1))
    torch.testing.assert_close(empirical_ntk(model, x1, x2, trace=True), tr)


def test_empirical_ntk_symmetric_psd() -> None:
    model = NTKMLP(3, 8, 1, 2, dtype=F64)
    x = torch.randn(7, 3, dtype=F64)
    k = empirical_ntk(model, x)
    flat = k.permute(0, 2, 1, 3).reshape(14, 14)
    torch.testing.assert_close(flat, flat.T)
    assert torch.linalg.eigvalsh(flat).min() > -1e-10


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_empirical_ntk_converges_to_analytic_with_width(activation: str) -> None:
    x = torch.randn(5, 4, dtype=F64)
    kw = {"activation": activation, "sigma_w2": 1.7, "sigma_b2": 0.2}
    analytic = ntk_kernel(x, depth=2, **kw)

    def err(width: int) -> float:
        out = []
        for seed in range(3):
            torch.manual_seed(seed)
            net = NTKMLP(4, width, 2, 1, dtype=F64, **kw)  # type: ignore[arg-type]
            e = empirical_ntk(net, x, trace=True)
            out.append(float((e - analytic).norm() / analytic.norm()))
        return sum(out) / len(out)

    small, large = err(32), err(1024)
    # Fluctuations shrink like width^{-1/2}: sqrt(32) ~ 5.7 between the two widths.
    assert large < small / 2.5
    assert large < 0.12


def test_monte_carlo_nngp_matches_analytic() -> None:
    x = torch.randn(4, 3, dtype=F64)
    kw = {"activation": "erf", "sigma_w2": 2.0, "sigma_b2": 0.3}
    analytic = nngp_kernel(x, depth=2, **kw)
    per_net = []
    for seed in range(60):
        torch.manual_seed(seed)
        net = NTKMLP(3, 256, 2, 64, dtype=F64, **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            f = net(x)  # (4, 64): 64 output units share the last hidden layer
        per_net.append(f @ f.T / f.shape[1])
    stack = torch.stack(per_net)
    mc = stack.mean(0)
    se = stack.std(0) / math.sqrt(stack.shape[0])
    # Sampling error (4 standard errors) plus the O(1/width) finite-width bias.
    assert ((mc - analytic).abs() <= 4 * se + 0.02 * analytic.abs().max()).all()


def test_quadrature_matches_closed_forms() -> None:
    x = torch.randn(6, 5, dtype=F64)
    kw = {"depth": 3, "sigma_w2": 1.5, "sigma_b2": 0.1}
    closed = infinite_width_kernels(x, activation="erf", **kw)  # type: ignore[arg-type]
    quad = infinite_width_kernels(x, activation="erf", method="quadrature", nodes=64, **kw)  # type: ignore[arg-type]
    torch.testing.assert_close(quad.nngp, closed.nngp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(quad.ntk, closed.ntk, rtol=1e-4, atol=1e-5)
    # ReLU's kink makes the tensor-product rule converge only ~1/nodes, but it converges.
    relu = infinite_width_kernels(x, activation="relu", **kw)  # type: ignore[arg-type]
    errs = []
    for n in (32, 128):
        q = infinite_width_kernels(x, activation="relu", method="quadrature", nodes=n, **kw)  # type: ignore[arg-type]
        errs.append(float((q.ntk - relu.ntk).abs().max() / relu.ntk.abs().max()))
    assert errs[1] < 0.02
    assert errs[1] < errs[0] / 2.5


def test_relu_kernel_matches_arccos_formula_and_identity_is_linear() -> None:
    x = torch.randn(5, 3, dtype=F64)
    # One hidden ReLU layer, sigma_w2 = 2, no bias:
    # Sigma^2 = 2|x||x'|/d (sin t + (pi - t) cos t)/pi.
    k = nngp_kernel(x, depth=1, activation="relu", sigma_w2=2.0, sigma_b2=0.0)
    n = x.norm(dim=1)
    cos = ((x @ x.T) / (n[:, None] * n[None, :])).clamp(-1, 1)
    t = torch.arccos(cos)
    ref = (2 * n[:, None] * n[None, :] / 3) * (torch.sin(t) + (math.pi - t) * cos) / math.pi
    torch.testing.assert_close(k, ref)
    # A deep linear net: Sigma = s^{L+1} x.x'/d + bias terms; Theta = (L+1) Sigma when no bias.
    lin = infinite_width_kernels(x, depth=3, activation="identity", sigma_w2=1.0, sigma_b2=0.0)
    torch.testing.assert_close(lin.nngp, x @ x.T / 3)
    torch.testing.assert_close(lin.ntk, 4 * x @ x.T / 3)


def test_closed_request_without_closed_form_warns_and_falls_back() -> None:
    x = torch.randn(3, 2, dtype=F64)
    with pytest.warns(TorchloomWarning, match="quadrature"):
        k = nngp_kernel(x, depth=2, activation="tanh", method="closed")
    torch.testing.assert_close(k, nngp_kernel(x, depth=2, activation="tanh"))
    # A user callable works through quadrature and agrees with the named activation.
    k2 = nngp_kernel(x, depth=2, activation=lambda z: torch.tanh(z))
    torch.testing.assert_close(k2, k)


@settings(max_examples=15, deadline=None)
@given(x=tensors(shape=(5, 3), min_value=-3, max_value=3))
def test_analytic_kernels_are_symmetric_psd(x: torch.Tensor) -> None:
    for act in ("relu", "erf", "gelu"):
        k = infinite_width_kernels(x, depth=2, activation=act, sigma_b2=0.1, nodes=16)
        for m in (k.nngp, k.ntk):
            torch.testing.assert_close(m, m.T)
            assert torch.linalg.eigvalsh(m).min() > -1e-8 * m.abs().max().clamp_min(1)


def _kernel_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    xtr = torch.randn(8, 3, dtype=F64)
    xte = torch.randn(5, 3, dtype=F64)
    ytr = torch.randn(8, 2, dtype=F64)
    k = ntk_kernel(torch.cat([xtr, xte]), depth=2, sigma_b2=0.1)
    return k, xtr, ytr, xte


def test_predict_gd_limits_and_ode(device: torch.device) -> None:
    k, _, y, _ = _kernel_problem()
    k, y = k.to(device), y.to(device)
    ktt, kxt = k[:8, :8], k[8:, :8]
    # t -> inf is kernel regression.
    ref = kxt @ torch.linalg.solve(ktt, y)
    torch.testing.assert_close(predict_gd(ktt, kxt, y, math.inf), ref)
    torch.testing.assert_close(predict_gd(ktt, kxt, y, 1e9, lr=1.0), ref, rtol=1e-6, atol=1e-6)
    # t = 0 returns the initial outputs; train predictions at t = inf interpolate.
    f0 = torch.randn(5, 2, dtype=F64, device=device)
    f0tr = torch.randn(8, 2, dtype=F64, device=device)
    out0 = predict_gd(ktt, kxt, y, 0.0, f0_train=f0tr, f0_test=f0)
    torch.testing.assert_close(out0, f0)
    torch.testing.assert_close(predict_gd(ktt, ktt, y, math.inf), y)
    # Finite t agrees with explicit integration of df/dt = -lr/N K_{., train} (f_train - y).
    lr, t, steps = 0.7, 3.0, 20000
    dt = t / steps
    ftr, fte = f0tr.clone(), f0.clone()
    for _ in range(steps):
        r = ftr - y
        ftr, fte = ftr - dt * lr / 8 * ktt @ r, fte - dt * lr / 8 * kxt @ r
    pred = predict_gd(ktt, kxt, y, t, lr, f0_train=f0tr, f0_test=f0)
    torch.testing.assert_close(pred, fte, rtol=1e-3, atol=1e-3)
    # One-dimensional targets keep their shape.
    assert predict_gd(ktt, kxt, y[:, 0], 1.0).shape == (5,)


def test_nngp_posterior() -> None:
    k, _, y, _ = _kernel_problem()
    ktt, kxt, kxx = k[:8, :8], k[8:, :8], k[8:, 8:]
    mean, cov = nngp_posterior(ktt, kxt, kxx, y, noise=0.0)
    torch.testing.assert_close(mean, predict_gd(ktt, kxt, y, math.inf))
    torch.testing.assert_close(cov, cov.T)
    assert torch.linalg.eigvalsh(cov).min() > -1e-8
    # Noise-free posterior at a training point is that point's label with zero variance.
    m2, c2 = nngp_posterior(ktt, ktt[:3], ktt[:3, :3], y, noise=0.0)
    torch.testing.assert_close(m2, y[:3])
    torch.testing.assert_close(c2, torch.zeros(3, 3, dtype=F64), atol=1e-8, rtol=0)
    # Monte Carlo: condition the joint Gaussian by sampling and regressing.
    joint = torch.distributions.MultivariateNormal(
        torch.zeros(13, dtype=F64), k + 1e-9 * torch.eye(13, dtype=F64)
    )
    s = joint.sample((40000,))
    _, c3 = nngp_posterior(ktt, kxt, kxx, y[:, 0], noise=0.0)
    beta = torch.linalg.lstsq(s[:, :8], s[:, 8:]).solution
    resid = s[:, 8:] - s[:, :8] @ beta
    torch.testing.assert_close(resid.T @ resid / s.shape[0], c3, rtol=0.1, atol=0.05)


def test_bad_inputs() -> None:
    k, _, y, _ = _kernel_problem()
    ktt, kxt = k[:8, :8], k[8:, :8]
    bad = ktt - 2 * torch.linalg.eigvalsh(ktt).max() * torch.eye(8, dtype=F64) / 3
    with pytest.raises(ValueError, match="smallest eigenvalue"):
        predict_gd(bad, kxt, y, 1.0)
    with pytest.raises(ValueError, match="k_test_train"):
        predict_gd(ktt, kxt[:, :5], y, 1.0)
    with pytest.raises(ValueError, match="y_train"):
        predict_gd(ktt, kxt, y[:5], 1.0)
    with pytest.raises(ValueError, match="t must be"):
        predict_gd(ktt, kxt, y, -1.0)
    with pytest.raises(ValueError, match="x1 and x2"):
        ntk_kernel(torch.randn(3, 2), torch.randn(3, 4), depth=1)
    with pytest.raises(ValueError, match="activation"):
        ntk_kernel(torch.randn(3, 2), depth=1, activation="nope")
    with pytest.raises(ValueError, match="mode"):
        empirical_ntk(NTKMLP(2, 4, 1), torch.randn(3, 2), mode="bad")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x1"):
        empirical_ntk(NTKMLP(2, 4, 1), torch.ones(3, 2, dtype=torch.long))


def test_ntk_mlp_module_behaviour(device: torch.device) -> None:
    net = NTKMLP(3, 8, 2, 2, activation="erf", dtype=F64).to(device)
    other = NTKMLP(3, 8, 2, 2, activation="erf", dtype=F64).to(device)
    other.load_state_dict(net.state_dict())
    x = torch.randn(4, 3, dtype=F64, device=device)
    torch.testing.assert_close(net(x), other(x))
    assert net(x).dtype == F64 and net(x).device.type == device.type
    with pytest.raises(ValueError, match="last dimension"):
        net(torch.randn(4, 5, dtype=F64, device=device))
    # NTK and standard parameterisation share the NNGP: same output distribution at init.
    g = torch.Generator().manual_seed(0)
    std = NTKMLP(3, 8, 2, 2, parameterization="standard", dtype=F64)
    ntk = NTKMLP(3, 8, 2, 2, parameterization="ntk", dtype=F64)
    std.reset_parameters(torch.Generator().manual_seed(0))
    ntk.reset_parameters(g)
    x = torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(std(x), ntk(x))
