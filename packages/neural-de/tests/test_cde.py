"""Control-path interpolation and neural CDEs, against exact polynomials and torchcde."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.neural_de import (
    NeuralCDE,
    hermite_cubic_path,
    linear_path,
    natural_cubic_path,
    observation_channels,
)


def _irregular_times(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.cumsum(0.2 + torch.rand(n, generator=gen, dtype=torch.float64), 0)


@given(st.integers(3, 9), st.integers(0, 1000))
def test_paths_interpolate_the_observations(n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    t = _irregular_times(n, gen)
    x = torch.randn(2, n, 3, generator=gen, dtype=torch.float64)
    for make in (linear_path, hermite_cubic_path, natural_cubic_path):
        path = make(x, t)
        vals = torch.stack([path.evaluate(s) for s in t], 1)
        torch.testing.assert_close(vals, x, rtol=1e-10, atol=1e-10)


def test_natural_spline_is_c2_and_natural() -> None:
    gen = torch.Generator().manual_seed(0)
    t = _irregular_times(7, gen)
    x = torch.randn(2, 7, 2, generator=gen, dtype=torch.float64)
    p = natural_cubic_path(x, t)
    second = 2 * p.c + 6 * p.d * (t[1:] - t[:-1]).view(1, -1, 1)  # X'' at each right end
    torch.testing.assert_close(second[:, :-1], 2 * p.c[:, 1:], rtol=1e-9, atol=1e-9)
    left_d = torch.stack([p.derivative(s - 1e-12) for s in t[1:-1]], 1)
    right_d = torch.stack([p.derivative(s) for s in t[1:-1]], 1)
    torch.testing.assert_close(left_d, right_d, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(p.c[:, 0], torch.zeros_like(p.c[:, 0]))
    torch.testing.assert_close(second[:, -1], torch.zeros_like(second[:, -1]), rtol=0, atol=1e-9)


def test_hermite_exact_on_linear_and_natural_exact_on_linear() -> None:
    t = torch.tensor([0.0, 0.3, 1.0, 1.2, 2.5], dtype=torch.float64)
    x = (2.0 * t - 1.0).view(1, -1, 1)
    q = torch.linspace(0, 2.5, 31, dtype=torch.float64)
    for make in (linear_path, hermite_cubic_path, natural_cubic_path):
        p = make(x, t)
        vals = torch.stack([p.evaluate(s) for s in q], 1)
        torch.testing.assert_close(vals, (2.0 * q - 1.0).view(1, -1, 1), rtol=1e-12, atol=1e-12)


def test_natural_spline_exact_on_natural_cubic_splines() -> None:
    """Built independently from the truncated-power basis, a C² piecewise cubic with zero second
    derivative at both ends is reproduced exactly from its knot values (uniqueness)."""
    t0, tn = 0.0, 3.0
    taus = torch.tensor([0.4, 1.1, 1.5, 2.6], dtype=torch.float64)
    alpha = torch.tensor([0.7, -1.3, 0.9, 0.5], dtype=torch.float64)
    # s(t) = β(t − t₀)³ + 0.3t − 1 + Σ αₖ(t − τₖ)₊³ has s''(t₀) = 0; choose β so s''(t_n) = 0.
    beta = -float((alpha * (tn - taus)).sum()) / (tn - t0)

    def s(t: torch.Tensor) -> torch.Tensor:
        plus = (t[:, None] - taus[None, :]).clamp_min(0) ** 3
        return beta * (t - t0) ** 3 + 0.3 * t - 1 + plus @ alpha

    knots = torch.cat([torch.tensor([t0]), taus, torch.tensor([tn])]).double()
    path = natural_cubic_path(s(knots).view(1, -1, 1), knots)
    q = torch.linspace(t0, tn, 61, dtype=torch.float64)
    vals = torch.stack([path.evaluate(v) for v in q], 1).view(-1)
    torch.testing.assert_close(vals, s(q), rtol=1e-10, atol=1e-10)


def test_paths_match_torchcde() -> None:
    torchcde = pytest.importorskip("torchcde")
    gen = torch.Generator().manual_seed(1)
    t = _irregular_times(8, gen)
    x = torch.randn(3, 8, 2, generator=gen, dtype=torch.float64)
    q = torch.linspace(float(t[0]), float(t[-1]), 41, dtype=torch.float64)
    pairs = [
        (
            linear_path,
            torchcde.LinearInterpolation(torchcde.linear_interpolation_coeffs(x, t=t), t=t),
        ),
        (
            hermite_cubic_path,
            torchcde.CubicSpline(
                torchcde.hermite_cubic_coefficients_with_backward_differences(x, t=t), t=t
            ),
        ),
        (natural_cubic_path, torchcde.CubicSpline(torchcde.natural_cubic_coeffs(x, t=t), t=t)),
    ]
    for make, ref in pairs:
        ours = make(x, t)
        for s in q[1:-1]:
            torch.testing.assert_close(ours.evaluate(s), ref.evaluate(s), rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(ours.derivative(s), ref.derivative(s), rtol=1e-8, atol=1e-8)


def test_missing_values_filled_linearly_in_time() -> None:
    t = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.tensor([[[float("nan")], [2.0], [float("nan")], [8.0]]], dtype=torch.float64)
    p = linear_path(x, t)
    vals = torch.stack([p.evaluate(s) for s in t], 1).view(-1)
    # before the first observation: constant; between 1 and 4: linear in time
    torch.testing.assert_close(vals, torch.tensor([2.0, 2.0, 6.0, 8.0], dtype=torch.float64))
    feats = observation_channels(x, t)
    assert feats.shape == (1, 4, 3)
    torch.testing.assert_close(
        feats[0, :, 2], torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="no observed value"):
        linear_path(torch.full((1, 3, 1), float("nan")), torch.arange(3.0))


def test_neural_cde_matches_torchcde() -> None:
    torchcde = pytest.importorskip("torchcde")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    t = _irregular_times(10, gen)
    x = torch.randn(4, 10, 3, generator=gen, dtype=torch.float64)
    model = NeuralCDE(3, 5, 2, width=16).double()
    ours = model(
        natural_cubic_path(x, t), method="dopri5", rtol=1e-9, atol=1e-9, return_sequence=True
    )
    spline = torchcde.CubicSpline(torchcde.natural_cubic_coeffs(x, t=t), t=t)

    class Func(torch.nn.Module):
        def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return model.field(z)

    z0 = model.initial(spline.evaluate(t[0]))
    zs = torchcde.cdeint(X=spline, func=Func(), z0=z0, t=t, method="dopri5", rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours, model.readout(zs), rtol=1e-6, atol=1e-6)


def test_neural_cde_gradients_and_errors(device: torch.device) -> None:
    model = NeuralCDE(2, 4, 3, width=8).to(device)
    t = torch.linspace(0, 1, 6, device=device)
    x = torch.randn(5, 6, 2, device=device)
    out = model(hermite_cubic_path(x, t))
    assert out.shape == (5, 3)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="path has 3 channels but the model expects 2"):
        model(linear_path(torch.randn(5, 6, 3, device=device), t))
    with pytest.raises(ValueError, match="t has 5 times but x has 6 observations"):
        linear_path(x, t[:5])
    with pytest.raises(ValueError, match="strictly increasing"):
        linear_path(x, t.flip(0))
