"""Our 4-bit uniform quantiser against Brevitas's weight quantisers (the QAT benchmark's peer).

Checks the scaling pairings ``benchmarks/bench_qat.py`` relies on: Brevitas's
``ShiftedUint8Weight*Float`` at 4 bits is the same min–max grid as ours (16 levels, step
``(max − min)/15`` per tensor or per output channel, up to its integer zero point), and its
default ``Int8WeightPerTensorFloat`` is a symmetric narrow-range grid (15 levels ``s·{−7…7}``,
``s = max|w|/7``). Skipped when Brevitas is not installed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchloom.quantize.uniform import UniformQuantizer, uniform_quantize

brevitas_nn = pytest.importorskip("brevitas.nn")
brevitas_quant = pytest.importorskip("brevitas.quant")


def _levels(v: torch.Tensor, lo: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``(v − lo)/step``, which must be (close to) integers on a uniform grid."""
    return (v - lo) / step


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_shifted_uint_matches_our_min_max_grid(per_channel: bool, seed: int) -> None:
    torch.manual_seed(seed)
    quant = (
        brevitas_quant.ShiftedUint8WeightPerChannelFloat
        if per_channel
        else brevitas_quant.ShiftedUint8WeightPerTensorFloat
    )
    layer = brevitas_nn.QuantLinear(48, 12, bias=True, weight_quant=quant, weight_bit_width=4)
    w = layer.weight.detach()
    peer = layer.quant_weight().value.detach()
    rows = w if per_channel else w.reshape(1, -1)
    ours = uniform_quantize(w, 4, 48 if per_channel else None).reshape(rows.shape)
    peer_rows = peer.reshape(rows.shape)
    lo = rows.amin(1, keepdim=True)
    step = (rows.amax(1, keepdim=True) - lo) / 15
    tol = 1e-4 * step
    # ours: the 16 levels lo + k·step, nearest to w
    k = _levels(ours, lo, step)
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert k.round().min() >= 0 and k.round().max() <= 15
    assert ((ours - rows).abs() <= step / 2 + tol).all()
    # Brevitas: the same step, the grid shifted by its integer zero point (at most half a step)
    kp = _levels(peer_rows, peer_rows.amin(1, keepdim=True), step)
    assert torch.allclose(kp, kp.round(), atol=1e-3)
    assert kp.round().max() <= 15
    assert ((peer_rows - rows).abs() <= step + tol).all()
    assert ((peer_rows - ours).abs() <= step + tol).all()


def test_default_int4_is_symmetric_narrow_range() -> None:
    torch.manual_seed(0)
    layer = brevitas_nn.QuantLinear(64, 32, bias=True, weight_bit_width=4)
    w = layer.weight.detach()
    peer = layer.quant_weight().value.detach()
    s = w.abs().max() / 7
    k = peer / s
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert k.round().abs().max() == 7  # 15 levels, −8 unused
    assert ((peer - w).abs() <= s / 2 + 1e-6).all()
    # ours has 16 levels on the same tensor
    assert uniform_quantize(w, 4, None).unique().numel() == 16


def test_our_gradient_is_straight_through_brevitas_is_not() -> None:
    """Ours: ∂L/∂w = ∂L/∂Q(w). Brevitas also back-propagates through the min/max statistics,
    so its weight gradient differs from the plain straight-through one (the difference the
    benchmark's docstring names)."""
    torch.manual_seed(0)
    x = torch.randn(16, 48)
    layer = brevitas_nn.QuantLinear(
        48,
        12,
        bias=True,
        weight_quant=brevitas_quant.ShiftedUint8WeightPerTensorFloat,
        weight_bit_width=4,
    )
    w = layer.weight.detach().clone().requires_grad_(True)
    q = UniformQuantizer(4, None)(w)
    F.linear(x, q, layer.bias.detach()).square().sum().backward()
    qd = q.detach().clone().requires_grad_(True)
    F.linear(x, qd, layer.bias.detach()).square().sum().backward()
    assert w.grad is not None and qd.grad is not None
    torch.testing.assert_close(w.grad, qd.grad)
    layer(x).square().sum().backward()
    assert layer.weight.grad is not None
    assert not torch.allclose(layer.weight.grad, w.grad, atol=1e-3)
