"""Neural SDE helpers on torchsde: exact solutions, reproducibility, adjoints, latent SDE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchloom.neural_de import LatentSDE, NeuralSDE, brownian_interval, odeint, sdeint


class _Affine(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * y


def _gbm(mu: float, sigma: float, sde_type: str) -> NeuralSDE:
    return NeuralSDE(_Affine(mu), _Affine(sigma), sde_type=sde_type)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sde_type", "method"),
    [("ito", "milstein"), ("ito", "srk"), ("stratonovich", "reversible_heun")],
)
def test_geometric_brownian_motion_strong_solution(
    sde_type: str, method: str, device: torch.device
) -> None:
    """dX = μX dt + σX dW: X_T = X₀ exp((μ − σ²/2)T + σW_T) (Itô), exp(μT + σW_T) (Stratonovich)."""
    mu, sigma = 0.5, 0.8
    sde = _gbm(mu, sigma, sde_type).to(device)
    y0 = torch.full((16, 1), 1.0, dtype=torch.float64, device=device)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
    gen = torch.Generator().manual_seed(3)
    levy = "space-time" if method == "srk" else "none"
    bm = brownian_interval(
        0.0, 1.0, (16, 1), dtype=torch.float64, device=device, generator=gen, levy_area=levy
    )  # type: ignore[arg-type]
    ys = sdeint(sde, y0, ts, method=method, dt=2e-3, bm=bm)
    w = bm(0.0, 1.0)
    drift = mu - sigma**2 / 2 if sde_type == "ito" else mu
    exact = y0 * torch.exp(drift + sigma * w)
    rel = ((ys[-1] - exact).abs() / exact).max()
    assert rel < 2e-2, float(rel)


def test_zero_diffusion_reduces_to_ode() -> None:
    drift = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()

    class Drift(nn.Module):
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return drift(y)

    class Zero(nn.Module):
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(y)

    sde = NeuralSDE(Drift(), Zero())
    y0 = torch.randn(5, 2, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    ys = sdeint(sde, y0, ts, method="reversible_heun", dt=1e-3)
    ref = odeint(lambda t, y: drift(y), y0, ts, rtol=1e-10, atol=1e-10)
    assert (ys - ref).abs().max() < 1e-5


def test_generator_makes_paths_reproducible() -> None:
    sde = _gbm(0.1, 0.5, "stratonovich")
    y0 = torch.ones(4, 1, dtype=torch.float64)
    ts = torch.linspace(0, 1, 3, dtype=torch.float64)
    a = sdeint(sde, y0, ts, generator=torch.Generator().manual_seed(0))
    b = sdeint(sde, y0, ts, generator=torch.Generator().manual_seed(0))
    c = sdeint(sde, y0, ts, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3


def test_reversible_heun_adjoint_matches_autograd() -> None:
    sde = _gbm(0.3, 0.4, "stratonovich")
    y0 = torch.ones(8, 1, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)  # dt = 2⁻⁴ divides the spacing exactly
    grads = []
    for sens in ("autograd", "adjoint"):
        sde.zero_grad()
        gen = torch.Generator().manual_seed(5)
        ys = sdeint(sde, y0, ts, dt=2**-4, sensitivity=sens, generator=gen)  # type: ignore[arg-type]
        ys.pow(2).sum().backward()
        grads.append(torch.stack([p.grad for p in sde.parameters()]))  # type: ignore[misc]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_bad_inputs() -> None:
    sde = _gbm(0.1, 0.1, "ito")
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y0 must have 2 dimensions \(B, D\)"):
        sdeint(sde, torch.ones(3, dtype=torch.float64), ts)
    with pytest.raises(ValueError, match="strictly increasing"):
        sdeint(sde, torch.ones(3, 1, dtype=torch.float64), ts.flip(0))
    with pytest.raises(ValueError, match="does not solve ito SDEs; valid: euler, milstein, srk"):
        sdeint(sde, torch.ones(3, 1, dtype=torch.float64), ts, method="reversible_heun")
    bad = NeuralSDE(_Affine(1.0), nn.Identity(), noise_type="general")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bad.g(torch.tensor(0.0), torch.ones(2, 1))
    with pytest.raises(ValueError, match="sde_type"):
        NeuralSDE(_Affine(1.0), _Affine(1.0), sde_type="levy")  # type: ignore[arg-type]


def test_latent_sde_training_improves_elbo() -> None:
    torch.manual_seed(0)
    ts = torch.linspace(0, 1, 11)
    phase = torch.rand(8) * 2 * math.pi
    xs = torch.sin(2 * math.pi * ts[:, None] + phase[None, :])[..., None] * 0.5  # (T, B, 1)
    model = LatentSDE(data_size=1, latent_size=2, context_size=4, hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)

    def neg_elbo() -> torch.Tensor:
        log_pxs, kl = model(xs, ts, noise_std=0.1, dt=0.1, generator=gen)
        return -log_pxs + kl

    with torch.no_grad():
        start = float(sum(neg_elbo() for _ in range(4))) / 4
    for _ in range(25):
        loss = neg_elbo()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float(sum(neg_elbo() for _ in range(4))) / 4
    assert end < start - 0.25 * abs(start)
    samples = model.sample(3, ts, dt=0.1, generator=gen)
    assert samples.shape == (11, 3, 1)
    with pytest.raises(ValueError, match=r"ts must have shape \(11,\)"):
        model(xs, ts[:-1])
