"""Surrogate spike functions, sign STE and the BiPer periodic sign."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.core.autograd import (
    Surrogate,
    atan,
    fast_sigmoid,
    heaviside,
    periodic_sign,
    rectangular,
    sigmoid,
    sign_ste,
    triangle,
)
from torchloom.core.testing import assert_gradcheck
from torchloom.core.testing.strategies import tensors

SURROGATES = [
    rectangular(1.0),
    rectangular(0.5),
    triangle(1.0),
    sigmoid(4.0),
    atan(2.0),
    fast_sigmoid(25.0),
]


class _PrimitiveWithSurrogateGrad(torch.autograd.Function):
    """Forward: the surrogate's primitive; backward: the surrogate's analytic ``grad``.

    gradcheck compares that analytic backward with finite differences of the primitive, so it
    proves ``Surrogate.grad`` is the derivative of ``Surrogate.primitive``.
    """

    @staticmethod
    def forward(ctx, x, s):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.s = s
        return s.primitive(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return g * ctx.s.grad(x), None


@pytest.mark.parametrize("s", SURROGATES, ids=lambda s: f"{s.kind}-{s.param}")
def test_surrogate_grad_is_derivative_of_primitive(s: Surrogate) -> None:
    # keep away from the kinks of the piecewise surrogates, where FD is ill-defined
    x = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64)
    kinks = torch.tensor([-s.param, -s.param / 2, 0.0, s.param / 2, s.param], dtype=torch.float64)
    x = x[(x[:, None] - kinks).abs().min(1).values > 1e-3].requires_grad_()
    assert_gradcheck(lambda t: _PrimitiveWithSurrogateGrad.apply(t, s), [x])


@pytest.mark.parametrize("s", SURROGATES, ids=lambda s: f"{s.kind}-{s.param}")
def test_heaviside_backward_is_surrogate(s: Surrogate, device: torch.device) -> None:
    x = torch.randn(64, dtype=torch.float64, device=device, requires_grad=True)
    g = torch.randn(64, dtype=torch.float64, device=device)
    y = heaviside(x, s)
    (dx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(dx, g * s.grad(x.detach()))


@given(tensors(dtype=torch.float64))
def test_heaviside_forward_exact(x: torch.Tensor) -> None:
    y = heaviside(x, atan())
    assert torch.equal(y, (x >= 0).double())


def test_surrogate_area_equals_primitive_increment_and_unit_step() -> None:
    x = torch.linspace(-50, 50, 400001, dtype=torch.float64)
    for s in SURROGATES:
        area = torch.trapezoid(s.grad(x), x)
        inc = s.primitive(x[-1:]) - s.primitive(x[:1])
        torch.testing.assert_close(area, inc[0], rtol=0, atol=1e-3)  # box edges cost O(h)
    # the relaxed steps go from 0 to 1 (unit area); fast_sigmoid follows snnTorch (area 2/slope)
    far = torch.tensor([-1e9, 1e9], dtype=torch.float64)
    for s in SURROGATES[:-1]:
        torch.testing.assert_close(s.primitive(far), torch.tensor([0.0, 1.0]).double())


def test_heaviside_bad_input() -> None:
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        heaviside(torch.arange(3))
    with pytest.raises(TypeError, match="surrogate must be a Surrogate"):
        heaviside(torch.zeros(3), "atan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rectangular parameter must be finite and > 0"):
        rectangular(0.0)


@given(tensors(dtype=torch.float64), st.floats(0.1, 3.0))
def test_sign_ste(x: torch.Tensor, clip: float) -> None:
    x = x.clone().requires_grad_()
    y = sign_ste(x, clip)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(y.detach(), torch.where(x >= 0, 1.0, -1.0).double())
    g = torch.randn_like(x)
    (dx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(dx, g * (x.detach().abs() <= clip).double())


def test_periodic_sign_matches_square_wave_and_sine_gradient() -> None:
    freq = 3.0
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    y = periodic_sign(x, freq)
    torch.testing.assert_close(
        y.detach(),
        torch.sign(torch.sin(freq * x.detach())).where(
            torch.sin(freq * x.detach()) != 0, torch.ones_like(y)
        ),
    )
    # backward equals the gradient of sin(freq x), computed by autograd on the real function
    (dx,) = torch.autograd.grad(y.sum(), x)
    (ref,) = torch.autograd.grad(torch.sin(freq * x).sum(), x)
    torch.testing.assert_close(dx, ref)
    with pytest.raises(ValueError, match="freq must be finite and > 0"):
        periodic_sign(x, -1.0)


def test_compile_traces_through_spike() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return heaviside(x - 0.2, sigmoid(4.0)).sum() + sign_ste(x).sum()

    x = torch.randn(16, requires_grad=True)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    (g1,) = torch.autograd.grad(compiled(x), x)
    (g2,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(g1, g2)
