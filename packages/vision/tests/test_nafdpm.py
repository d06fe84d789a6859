"""NAF-DPM parts: activation-free NAFNet, DPM-Solver on an exactly solvable Gaussian problem."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchloom.vision.nafdpm import (
    NAFBlock,
    NAFNet,
    ResidualDiffusion,
    dpm_solver_sample,
    linear_alpha_bars,
)

ACTIVATIONS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.Softplus,
    nn.PReLU,
    nn.Mish,
    nn.Hardswish,
)


def test_nafnet_has_no_activation_modules() -> None:
    net = NAFNet(2, 1, width=8, enc_blocks=(1, 2), dec_blocks=(1, 1), time_embedding=True)
    assert not [m for m in net.modules() if isinstance(m, ACTIVATIONS)]


def test_nafblock_is_identity_at_init_and_not_after(device: torch.device) -> None:
    blk = NAFBlock(8).to(device)
    x = torch.randn(2, 8, 6, 7, device=device)
    torch.testing.assert_close(blk(x), x)
    with torch.no_grad():
        blk.beta.fill_(0.5)
        blk.gamma.fill_(0.5)
    y = blk(x)
    assert not torch.allclose(y, x)
    # gates make it nonlinear although no activation exists: f(2x) != 2 f(x) - ...
    assert not torch.allclose(blk(2 * x) - 2 * x, 2 * (y - x), atol=1e-4)


def test_nafnet_shapes_time_embedding_and_state_dict(device: torch.device) -> None:
    net = NAFNet(2, 1, width=8, time_embedding=True).to(device)
    x = torch.randn(3, 2, 16, 12, device=device)
    t = torch.tensor([0, 5, 99], device=device)
    out = net(x, t)
    assert out.shape == (3, 1, 16, 12)
    clone = NAFNet(2, 1, width=8, time_embedding=True).to(device)
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone(x, t), out)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 10, 12, device=device), t[:1])
    with pytest.raises(ValueError, match="t "):
        net(x)
    with pytest.raises(ValueError, match="same length"):
        NAFNet(enc_blocks=(1,), dec_blocks=(1, 1))


def _gaussian_problem(mu: float, s: float, ab: torch.Tensor):
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t].sqrt().view(-1, *([1] * (x.dim() - 1)))
        var = 1 - ab[t].view(-1, *([1] * (x.dim() - 1)))
        # exact posterior mean E[x0 | x_t] for x0 ~ N(mu, s^2)
        return mu + a * s**2 / (a**2 * s**2 + var) * (x - a * mu)

    def exact(x_T: torch.Tensor) -> torch.Tensor:
        # the probability-flow ODE maps x_T to t = 0 affinely
        a_T, a_0 = ab[-1].sqrt(), ab[0].sqrt()
        sd_T = torch.sqrt(a_T**2 * s**2 + 1 - ab[-1])
        sd_0 = torch.sqrt(a_0**2 * s**2 + 1 - ab[0])
        return a_0 * mu + sd_0 / sd_T * (x_T - a_T * mu)

    return denoise, exact


def test_dpm_solver_recovers_gaussian_data_distribution() -> None:
    ab = linear_alpha_bars(100)
    mu, s = 1.5, 0.5
    denoise, _ = _gaussian_problem(mu, s, ab)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    x0 = dpm_solver_sample(denoise, x_T, ab, steps=20)
    assert abs(float(x0.mean()) - mu) < 0.02
    assert abs(float(x0.std()) - math.sqrt(s**2 + (1 - float(ab[0])))) < 0.02


def test_dpm_solver_is_second_order() -> None:
    ab = linear_alpha_bars(1000)
    denoise, exact = _gaussian_problem(0.7, 0.3, ab)
    x_T = torch.linspace(-3, 3, 101, dtype=torch.float64).view(-1, 1)
    want = exact(x_T)
    errs = [float((dpm_solver_sample(denoise, x_T, ab, n) - want).abs().max()) for n in (40, 80)]
    # halving the step size divides the error by ~4 for a second-order method
    assert errs[0] / errs[1] > 3.0


def test_residual_diffusion_trains_and_restores(device: torch.device) -> None:
    pred = NAFNet(1, 1, width=8)
    den = NAFNet(2, 1, width=8, time_embedding=True)
    model = ResidualDiffusion(pred, den, num_steps=100).to(device)
    x = torch.rand(2, 1, 16, 16, device=device)
    y = x + 0.1 * torch.randn_like(x)
    g = torch.Generator().manual_seed(0)
    loss = model.loss(y, x, generator=g)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in den.parameters() if p.requires_grad)
    out = model.restore(y, steps=5, generator=g)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="steps"):
        dpm_solver_sample(lambda x, t: x, torch.zeros(2, 1), linear_alpha_bars(10), steps=10)
    with pytest.raises(ValueError, match="num_steps"):
        linear_alpha_bars(1)
    with pytest.raises(ValueError, match="channels"):
        NAFNet(1, 1)(torch.zeros(1, 3, 8, 8))


def test_synthetic_documents() -> None:
    from torchloom.vision.nafdpm import synthetic_documents

    clean, degraded = synthetic_documents(6, 48, seed=3)
    assert clean.shape == degraded.shape == (6, 1, 48, 48)
    for t in (clean, degraded):
        assert float(t.min()) >= 0 and float(t.max()) <= 1
    ink = (clean < 0.5).float().mean(dim=(1, 2, 3))
    assert bool((ink > 0.02).all()) and bool((ink < 0.4).all())
    mse = torch.mean((clean - degraded) ** 2, dim=(1, 2, 3))
    assert bool((10 * torch.log10(1 / mse) < 25).all())  # visibly degraded
    again = synthetic_documents(6, 48, seed=3)
    torch.testing.assert_close(again[0], clean)
    torch.testing.assert_close(again[1], degraded)
    with pytest.raises(ValueError, match="size"):
        synthetic_documents(2, 8)
