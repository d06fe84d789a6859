"""BiPer layers: forward/backward against closed forms, stages, transform, QE vs scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import integrate
from torch import nn

from torchloom.core.testing import assert_gradcheck
from torchloom.quantize.biper import (
    BiPerConv2d,
    BiPerLinear,
    SignSTEConv2d,
    SignSTELinear,
    binarize_model,
    binary_activation,
    biper_regularizer,
    quantization_error,
    set_biper_stage,
    tau_schedule,
)


def test_stage2_weight_is_square_wave_with_sine_gradient(device: str) -> None:
    layer = BiPerLinear(7, 5, freq=13.0, stage=2).to(device)
    w = layer.weight
    wb = layer.binary_weight()
    assert torch.equal(wb, torch.where(torch.sin(13.0 * w) >= 0, 1.0, -1.0))
    g = torch.randn_like(wb)
    (gw,) = torch.autograd.grad(wb, w, g)
    torch.testing.assert_close(gw, g * 13.0 * torch.cos(13.0 * w.detach()))


def test_stage2_gradient_equals_stage1_gradient(device: str) -> None:
    """The square wave's surrogate backward is exactly the stage-1 sine's true gradient."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, device=device)
    grads = []
    for stage in (1, 2):
        torch.manual_seed(1)
        layer = BiPerLinear(6, 3, freq=9.0, stage=stage, binarize_input=False).to(device)
        out = layer(x)
        # the stage-1 output differs; push the same upstream gradient through both weights
        (g,) = torch.autograd.grad(layer.binary_weight().sum(), layer.weight)
        grads.append(g)
        assert out.shape == (4, 3)
    torch.testing.assert_close(grads[0], grads[1])


def test_stage1_layer_gradcheck() -> None:
    layer = BiPerLinear(4, 3, freq=5.0, stage=1, binarize_input=False).double()

    def f(x: torch.Tensor, w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": w, "alpha": a}, (x,))

    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    w = (0.2 * torch.randn(3, 4, dtype=torch.float64)).requires_grad_()
    a = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert_gradcheck(f, (x, w, a))


def test_binary_activation_forward_and_surrogate(device: str) -> None:
    x = torch.randn(5, 3, 4, device=device, requires_grad=True)
    y = binary_activation(x, normalize=False)
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, g * (2 - (2 * x.detach()).abs()).clamp(min=0))


def test_binary_activation_normalisation_only_changes_gradient(device: str) -> None:
    x = 3.0 * torch.randn(6, 10, device=device)
    xr = x.clone().requires_grad_()
    y = binary_activation(xr)
    assert torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    # reference: the normalised input's surrogate, chained through x / std(x)
    xn = (x / std).requires_grad_()
    ref = (2 - (2 * xn.detach()).abs()).clamp(min=0)
    (gx,) = torch.autograd.grad(y.sum(), xr)

    x2 = x.clone().requires_grad_()
    n2 = x2 / torch.sqrt(x2.var(1, keepdim=True, unbiased=False) + 1e-5)
    (gref,) = torch.autograd.grad((n2 * ref).sum(), x2)
    torch.testing.assert_close(gx, gref)


def test_conv_matches_functional_reference(device: str) -> None:
    conv = BiPerConv2d(3, 4, 3, padding=1, stride=2, freq=11.0, stage=2).to(device)
    with torch.no_grad():
        conv.alpha.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 9, 9, device=device)
    wb = torch.where(torch.sin(11.0 * conv.weight) >= 0, 1.0, -1.0)
    xb = torch.where(x >= 0, 1.0, -1.0)
    ref = torch.nn.functional.conv2d(xb, wb, None, 2, 1) * conv.alpha + conv.bias[:, None, None]
    torch.testing.assert_close(conv(x), ref)
    # the output of a binary conv is an integer count before scaling
    raw = torch.nn.functional.conv2d(xb, wb, None, 2, 1)
    assert torch.equal(raw, raw.round())


def test_ste_baselines(device: str) -> None:
    w_ident = SignSTELinear(4, 2, clip=None).to(device)
    w_clip = SignSTELinear(4, 2, clip=0.1).to(device)
    with torch.no_grad():
        w_ident.weight.copy_(torch.tensor([[0.05, -0.3, 0.0, 2.0], [-0.01, 0.2, -1.0, 0.09]]))
        w_clip.weight.copy_(w_ident.weight)
    for layer in (w_ident, w_clip):
        wb = layer.binary_weight()
        assert torch.equal(wb, torch.where(layer.weight >= 0, 1.0, -1.0))
    (g1,) = torch.autograd.grad(w_ident.binary_weight().sum(), w_ident.weight)
    (g2,) = torch.autograd.grad(w_clip.binary_weight().sum(), w_clip.weight)
    assert torch.equal(g1, torch.ones_like(g1))
    assert torch.equal(g2, (w_clip.weight.abs() <= 0.1).float())
    conv = SignSTEConv2d(2, 3, 3).to(device)
    assert conv(torch.randn(1, 2, 5, 5, device=device)).shape == (1, 3, 3, 3)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.conv1(x)).flatten(1))


@pytest.mark.parametrize("method", ["biper", "ste", "clipped_ste"])
def test_binarize_model_replaces_and_copies(method: str) -> None:
    net = _Net()
    bnet = binarize_model(net, method=method, freq=7.0, exclude=["conv1", "fc"])  # type: ignore[arg-type]
    assert type(bnet.conv1) is nn.Conv2d and type(bnet.fc) is nn.Linear
    kind = BiPerConv2d if method == "biper" else SignSTEConv2d
    assert isinstance(bnet.conv2, kind)
    assert torch.equal(bnet.conv2.weight, net.conv2.weight)
    assert bnet.conv2.bias is None
    assert type(net.conv2) is nn.Conv2d  # the original is untouched
    assert bnet(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_stage_handover_keeps_weights_and_freq() -> None:
    bnet = binarize_model(_Net(), freq=17.0, stage=1, exclude=["conv1"])
    sd = {k: v.clone() for k, v in bnet.state_dict().items()}
    set_biper_stage(bnet, 2)
    assert bnet.conv2.stage == 2 and bnet.conv2.freq == 17.0 and bnet.fc.freq == 17.0
    for k, v in bnet.state_dict().items():
        assert torch.equal(v, sd[k])
    wb = bnet.conv2.binary_weight()
    assert set(wb.unique().tolist()) <= {-1.0, 1.0}


def test_state_dict_round_trip() -> None:
    a = binarize_model(_Net(), freq=5.0, stage=2)
    b = binarize_model(_Net(), freq=5.0, stage=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(a(x), b(x))
    assert "conv2.alpha" in a.state_dict()


def test_dtype_follows_module() -> None:
    layer = BiPerConv2d(2, 2, 3, stage=2).double()
    out = layer(torch.randn(1, 2, 4, 4, dtype=torch.float64))
    assert out.dtype == torch.float64 and layer.alpha.dtype == torch.float64


def test_regularizer_matches_hand_computation() -> None:
    bnet = binarize_model(_Net(), freq=3.0)
    ref = sum(
        torch.mean(0.5 - 0.5 * torch.cos(2 * 3.0 * m.weight))
        for m in bnet.modules()
        if isinstance(m, (BiPerConv2d, BiPerLinear))
    )
    torch.testing.assert_close(biper_regularizer(bnet, 0.25), 0.25 * ref)


def test_tau_schedule_endpoints_and_monotone() -> None:
    vals = [tau_schedule(e, 10, 1e-3, 1.0) for e in range(11)]
    assert math.isclose(vals[0], 1e-3, abs_tol=1e-12)
    assert math.isclose(vals[-1], 1.0, rel_tol=1e-12)
    assert all(b > a for a, b in itertools.pairwise(vals))


def _qe_quad(freq: float, b: float, kind: str) -> float:
    def integrand(w: float) -> float:
        s = math.sin(freq * w)
        e = abs(s - (1.0 if s >= 0 else -1.0))
        return (e if kind == "l1" else e * e) * math.exp(-w / b) / b  # both halves by symmetry

    # integrate period by period: the integrand has a kink at every zero of the sine
    period = math.pi / freq
    total, k = 0.0, 0
    while k * period < 60 * b:
        total += integrate.quad(integrand, k * period, (k + 1) * period, limit=200)[0]
        k += 1
    return total


@settings(max_examples=15, deadline=None)
@given(freq=st.floats(0.2, 60.0), b=st.floats(0.01, 1.0), kind=st.sampled_from(["l1", "l2"]))
def test_quantization_error_matches_numerical_integration(freq: float, b: float, kind: str) -> None:
    qe = float(quantization_error(freq, b, kind=kind))  # type: ignore[arg-type]
    assert qe == pytest.approx(_qe_quad(freq, b, kind), abs=1e-6)


def test_quantization_error_monte_carlo_and_limits() -> None:
    w = torch.distributions.Laplace(0.0, 0.05).sample((400_000,))
    s = torch.sin(25.0 * w.double())
    mc = (s - torch.where(s >= 0, 1.0, -1.0)).abs().mean()
    assert float(quantization_error(25.0, 0.05)) == pytest.approx(float(mc), abs=3e-3)
    freqs = torch.logspace(-4, 4, 80, dtype=torch.float64)
    qe = quantization_error(freqs, 1.0)
    assert qe.dtype == torch.float64
    assert bool((qe[1:] <= qe[:-1]).all())  # a larger ω₀ never increases the error
    assert float(qe[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(qe[-1]) == pytest.approx(1 - 2 / math.pi, abs=1e-3)
    l2 = quantization_error(1e6, 1.0, kind="l2")
    assert float(l2) == pytest.approx(1.5 - 4 / math.pi, abs=1e-4)
    assert np.isfinite(quantization_error(1e-6, 1.0).item())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="freq"):
        BiPerLinear(2, 2, freq=0.0)
    with pytest.raises(ValueError, match="freq"):
        binarize_model(_Net(), freq=-1.0)
    with pytest.raises(ValueError, match="freq"):
        quantization_error(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="stage"):
        BiPerConv2d(1, 1, 3, stage=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        binarize_model(_Net(), method="xnor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exclude"):
        binarize_model(_Net(), exclude=["nope"])
    with pytest.raises(ValueError, match="no BiPer"):
        set_biper_stage(_Net(), 2)
    with pytest.raises(TypeError, match="x"):
        binary_activation(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        binary_activation(torch.ones(3))
