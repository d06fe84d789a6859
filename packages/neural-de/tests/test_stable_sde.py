"""Stable neural SDEs (Oh et al. 2024): the three forms, positivity, exact log-space GSDE."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from torchloom.neural_de import brownian_interval, natural_cubic_path
from torchloom.neural_de.stable_sde import StableNeuralSDE

KINDS = ["langevin", "linear_noise", "geometric", "naive"]


def _path(b: int = 4, n: int = 6, c: int = 3, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    t = torch.cumsum(0.1 + torch.rand(n, generator=gen, dtype=dtype), 0)
    return natural_cubic_path(torch.randn(b, n, c, generator=gen, dtype=dtype), t)


class _Const(nn.Module):
    def __init__(self, value: float, dim: int) -> None:
        super().__init__()
        self.value, self.dim = value, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.dim), self.value, dtype=x.dtype, device=x.device)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_forms(kind: str, device: torch.device) -> None:
    model = StableNeuralSDE(3, 5, 2, kind=kind, width=16).double().to(device)  # type: ignore[arg-type]
    path = _path()
    path = type(path)(*(x.to(device) for x in (path.t, path.a, path.b, path.c, path.d)))
    model.set_path(path)
    t = torch.tensor(0.5, dtype=torch.float64, device=device)
    z = torch.rand(4, 5, dtype=torch.float64, device=device) + 0.1
    assert model.drift(t, z).shape == (4, 5) and model.diffusion(t, z).shape == (4, 5)
    if kind == "langevin":  # additive noise: σ(t) does not depend on z
        torch.testing.assert_close(model.diffusion(t, z), model.diffusion(t, 3 * z))
    if kind in ("linear_noise", "geometric"):  # multiplicative: σ(t)·z is linear in z
        torch.testing.assert_close(model.diffusion(t, 3 * z), 3 * model.diffusion(t, z))
    if kind == "geometric":
        torch.testing.assert_close(model.drift(t, torch.zeros_like(z)), torch.zeros_like(z))
    out = model(path, dt=0.05, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2)
    seq = model(path, dt=0.05, return_sequence=True, generator=torch.Generator().manual_seed(0))
    assert seq.shape == (4, 6, 2)
    torch.testing.assert_close(seq[:, -1], out)


def test_langevin_drift_ignores_time_given_zbar() -> None:
    model = StableNeuralSDE(3, 5, 2, kind="langevin", width=16).double()
    assert model.gamma[0].in_features == 5  # γ(z̄): no time input
    lnsde = StableNeuralSDE(3, 5, 2, kind="linear_noise", width=16).double()
    assert lnsde.gamma[0].in_features == 6  # γ(t, z̄)


def test_geometric_keeps_states_positive_under_large_noise() -> None:
    model = StableNeuralSDE(3, 4, 1, kind="geometric", width=8).double()
    model.sigma = _Const(3.0, 4)  # σΔW < −1 happens often: Euler on z itself would go negative
    path = _path()
    zs = model.latent(path, dt=0.1, generator=torch.Generator().manual_seed(0))
    assert bool((zs > 0).all())
    # the same noise on z directly with Euler-Maruyama crosses zero
    z = model.initial_state(path)
    gen = torch.Generator().manual_seed(1)
    crossed = False
    for _ in range(50):
        z = z + 3.0 * z * torch.randn(z.shape, generator=gen, dtype=z.dtype) * 0.1**0.5
        crossed |= bool((z < 0).any())
    assert crossed


def test_geometric_log_space_is_exact_for_constant_coefficients() -> None:
    """γ ≡ a, σ ≡ s: z(T) = z(0)·exp((a − s²/2)T + s·W_T) exactly (log-space Euler is exact)."""
    a, s = 0.4, 0.7
    model = StableNeuralSDE(3, 2, 1, kind="geometric", width=8).double()
    model.gamma, model.sigma = _Const(a, 2), _Const(s, 2)
    path = _path(b=5)
    t0, t1 = float(path.t[0]), float(path.t[-1])
    bm = brownian_interval(
        t0,
        t1,
        (5, 2),
        dtype=torch.float64,
        device="cpu",
        generator=torch.Generator().manual_seed(0),
    )
    zs = model.latent(path, dt=0.01, bm=bm)
    z0 = model.initial_state(path)
    exact = z0 * torch.exp((a - s**2 / 2) * (t1 - t0) + s * bm(t0, t1))
    torch.testing.assert_close(zs[-1], exact, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trip_and_gradients() -> None:
    model = StableNeuralSDE(3, 4, 2, kind="linear_noise", width=8).double()
    path = _path()
    out = model(path, generator=torch.Generator().manual_seed(0))
    out.pow(2).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    other = StableNeuralSDE(3, 4, 2, kind="linear_noise", width=8).double()
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    torch.testing.assert_close(
        other(path, generator=torch.Generator().manual_seed(0)), out.detach()
    )


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        StableNeuralSDE(3, 4, 2, kind="ou")  # type: ignore[arg-type]
    model = StableNeuralSDE(2, 4, 2)
    with pytest.raises(ValueError, match="path has 3 channels but the model expects 2"):
        model(_path(dtype=torch.float32))
    with pytest.raises(RuntimeError, match="control path"):
        model.drift(torch.tensor(0.0), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="diffusion_bound"):
        StableNeuralSDE(2, 4, 2, diffusion_bound=0.0)


@pytest.mark.parametrize("kind", ["langevin", "naive"])
def test_diffusion_init_sets_sigma(kind: str) -> None:
    model = StableNeuralSDE(3, 5, 2, kind=kind, width=16, diffusion_init=0.07).double()  # type: ignore[arg-type]
    model.set_path(_path())
    z = torch.randn(4, 5, dtype=torch.float64)
    for tt in (0.0, 0.7, 3.0):
        s = model.diffusion(torch.tensor(tt, dtype=torch.float64), z)
        torch.testing.assert_close(s, torch.full_like(s, 0.07))


def test_mlp_head_shapes_and_bad_head() -> None:
    model = StableNeuralSDE(3, 5, 2, width=16, head="mlp").double()
    path = _path()
    gen = torch.Generator().manual_seed(0)
    assert model(path, dt=0.1, generator=gen).shape == (4, 2)
    assert model(path, dt=0.1, generator=gen, return_sequence=True).shape == (4, 6, 2)
    with pytest.raises(ValueError, match="head"):
        StableNeuralSDE(3, 5, 2, head="gru")  # type: ignore[arg-type]
