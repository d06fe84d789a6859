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
    if kind == "geometric":  # z·γ vanishes as z → 0 (γ is bounded); z = 0 itself is outside
        assert bool((model.drift(t, 1e-9 * z).abs() <= 1e-9).all())
    out = model(path, dt=0.05, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2)
    seq = model(path, dt=0.05, return_sequence=True, generator=torch.Generator().manual_seed(0))
    assert seq.shape == (4, 6, 2)
    torch.testing.assert_close(seq[:, -1], out)


def test_langevin_drift_is_autonomous_in_zbar() -> None:
    """LSDE: ``γ(z̄)`` — time enters only through ``z̄ = ζ(t, z, X(t))``; LNSDE: ``γ(t, z̄)``."""
    t = torch.linspace(0.0, 3.0, 5, dtype=torch.float64)
    const = natural_cubic_path(torch.ones(2, 5, 3, dtype=torch.float64), t)
    z = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t1, t2 = torch.tensor(0.3, dtype=torch.float64), torch.tensor(2.1, dtype=torch.float64)
    lsde = StableNeuralSDE(3, 5, 2, kind="langevin", width=16).double()
    lsde.set_path(const)
    assert lsde.gamma[0].in_features == 5
    torch.testing.assert_close(lsde.drift(t1, z), lsde.gamma(lsde.zbar(t1, z)))
    assert not torch.allclose(lsde.zbar(t1, z), lsde.zbar(t2, z))  # ζ(t, z, X(t)) sees t
    lnsde = StableNeuralSDE(3, 5, 2, kind="linear_noise", width=16).double()
    lnsde.set_path(const)
    assert lnsde.gamma[0].in_features == 7  # (sin t, cos t, z̄)
    feats = torch.stack([torch.sin(t1), torch.cos(t1)]).expand(2, 2)
    torch.testing.assert_close(
        lnsde.drift(t1, z), lnsde.gamma(torch.cat([feats, lnsde.zbar(t1, z)], 1))
    )


@pytest.mark.parametrize("kind", KINDS)
def test_control_path_drives_the_state(kind: str) -> None:
    """Two series that agree at t₀ (same z(0)) but differ later reach different z(T): the
    observations enter through z̄ = ζ(t, z, X(t)), not only through the initial state."""
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    x = torch.randn(1, 6, 3, dtype=torch.float64, generator=gen).repeat(2, 1, 1)
    x[1, 1:] += 1.0
    path = natural_cubic_path(x, t)
    model = StableNeuralSDE(3, 4, 2, kind=kind, width=16, diffusion_init=1e-12).double()  # type: ignore[arg-type]
    z0 = model.initial_state(path)
    torch.testing.assert_close(z0[0], z0[1])
    zs = model.latent(path, dt=0.1, generator=torch.Generator().manual_seed(0))
    assert (zs[-1, 0] - zs[-1, 1]).abs().max() > 1e-3
    # and z̄ reads X(t): same state, different control value, different z̄
    model.set_path(path)
    zz = torch.ones(2, 4, dtype=torch.float64)
    zb = model.zbar(torch.tensor(1.0, dtype=torch.float64), zz)
    assert (zb[0] - zb[1]).abs().max() > 1e-6


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
    with pytest.raises(ValueError, match="diffusion_init"):
        StableNeuralSDE(2, 4, 2, diffusion_init=-0.1)


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


@pytest.mark.parametrize("kind", KINDS)
def test_diffusion_bound_caps_sigma(kind: str) -> None:
    model = StableNeuralSDE(3, 4, 2, kind=kind, width=8, diffusion_bound=0.3).double()  # type: ignore[arg-type]
    free = StableNeuralSDE(3, 4, 2, kind=kind, width=8, diffusion_init=50.0).double()  # type: ignore[arg-type]
    model.sigma.load_state_dict(free.sigma.state_dict())  # σ ≈ 50 before the bound
    z = torch.rand(3, 4, dtype=torch.float64) + 0.5
    s = model._sigma(torch.tensor(0.5, dtype=torch.float64), z)
    assert bool((s <= 0.3).all()) and bool((s > 0.29).all())
    small = StableNeuralSDE(3, 4, 2, kind=kind, width=8, diffusion_bound=0.3, diffusion_init=1e-3)  # type: ignore[arg-type]
    s = small.double()._sigma(torch.tensor(0.5, dtype=torch.float64), z)
    torch.testing.assert_close(s, torch.full_like(s, 1e-3), rtol=1e-5, atol=0)  # ≈ identity


def test_geometric_head_reads_log_z() -> None:
    model = StableNeuralSDE(3, 4, 2, kind="geometric", width=8).double()
    path = _path()
    out = model(path, dt=0.1, generator=torch.Generator().manual_seed(0))
    zs = model.latent(path, dt=0.1, generator=torch.Generator().manual_seed(0))
    assert bool((zs > 0).all())
    torch.testing.assert_close(out, model.readout(zs[-1].log()))


def test_naive_without_control_ignores_the_path_after_t0() -> None:
    """control=False is the paper's naive neural SDE: X enters only through z(0)."""
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    x = torch.randn(1, 6, 3, dtype=torch.float64, generator=gen).repeat(2, 1, 1)
    x[1, 1:] += 1.0
    model = StableNeuralSDE(3, 4, 2, kind="naive", width=16, control=False).double()
    assert model.zeta.in_features == 4
    bm = brownian_interval(
        0.0, 2.0, (2, 4), dtype=torch.float64, device="cpu", generator=torch.Generator()
    )
    # identical noise for both series: rows of the Brownian motion differ, so compare a batch of
    # one series twice against the other series twice
    out_a = model.latent(natural_cubic_path(x[:1].repeat(2, 1, 1), t), dt=0.1, bm=bm)
    out_b = model.latent(natural_cubic_path(x[1:].repeat(2, 1, 1), t), dt=0.1, bm=bm)
    torch.testing.assert_close(out_a, out_b)
    with_control = StableNeuralSDE(3, 4, 2, kind="naive", width=16).double()
    a = with_control.latent(natural_cubic_path(x[:1].repeat(2, 1, 1), t), dt=0.1, bm=bm)
    b = with_control.latent(natural_cubic_path(x[1:].repeat(2, 1, 1), t), dt=0.1, bm=bm)
    assert (a[-1] - b[-1]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_diffusion_gate_is_the_authors_clipping(kind: str) -> None:
    """diffusion_gate: g ← tanh(sigmoid(θ)·g) on the whole diffusion term in z coordinates;
    GSDE's log-coordinate diffusion is that divided by z (Itô: d log z has g_z / z)."""
    plain = StableNeuralSDE(3, 4, 2, kind=kind, width=8, diffusion_init=2.0).double()  # type: ignore[arg-type]
    gated = StableNeuralSDE(
        3, 4, 2, kind=kind, width=8, diffusion_init=2.0, diffusion_gate=True
    ).double()  # type: ignore[arg-type]
    gated.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        gated.gate.fill_(0.3)  # type: ignore[union-attr]
    path = _path()
    plain.set_path(path)
    gated.set_path(path)
    t = torch.tensor(0.4, dtype=torch.float64)
    z = torch.rand(4, 4, dtype=torch.float64) + 0.5
    expect = torch.tanh(
        torch.sigmoid(torch.tensor(0.3, dtype=torch.float64)) * plain.diffusion(t, z)
    )
    torch.testing.assert_close(gated.diffusion(t, z), expect)
    assert bool((gated.diffusion(t, z).abs() < 1).all())
    if kind == "geometric":
        torch.testing.assert_close(gated.g(t, z.log()), expect / z)
        torch.testing.assert_close(
            gated.f(t, z.log()), gated._gamma(t, z) - 0.5 * (expect / z) ** 2
        )
