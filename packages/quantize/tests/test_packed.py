"""Bit-packed XNOR-popcount products equal the float ±1 computation exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchloom.quantize.biper import BiPerLinear, SignSTELinear
from torchloom.quantize.packed import PackedBinaryLinear, pack_signs, xnor_popcount_matmul


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def test_pack_signs_bit_layout(device: str) -> None:
    x = torch.tensor([[1.0, -1.0, 0.0, -2.0, 3.0, -0.5, -1.0, 1.0, 5.0]], device=device)
    packed = pack_signs(x)
    # 1 0 1 0 1 0 0 1 | 1 0000000
    assert packed.tolist() == [[0b10101001, 0b10000000]]
    assert packed.dtype == torch.uint8


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 9), o=st.integers(1, 9), n=st.integers(1, 70), seed=st.integers(0, 99))
def test_xnor_matmul_equals_float_sign_matmul(b: int, o: int, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(b, n, generator=g), torch.randn(o, n, generator=g)
    got = xnor_popcount_matmul(pack_signs(x), pack_signs(w), n)
    ref = _sign(x) @ _sign(w).T
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.float32), ref)


@pytest.mark.parametrize(
    ("b", "o", "n"),
    [
        (200, 1200, 513),  # 1200 · 9 words per row fit a block: blocks of whole rows
        (3, 3000, 700),  # 3000 · 11 words per row do not: column blocks, ragged last one
        (37, 5, 64),  # many rows per block, ragged last row block
    ],
)
def test_xnor_matmul_blocked_large(b: int, o: int, n: int, device: str) -> None:
    x, w = torch.randn(b, n, device=device), torch.randn(o, n, device=device)
    got = xnor_popcount_matmul(pack_signs(x), pack_signs(w), n)
    ref = _sign(x).double() @ _sign(w).double().T
    assert torch.equal(got.double(), ref)


def test_custom_op_registration() -> None:
    a = pack_signs(torch.randn(4, 20))
    b = pack_signs(torch.randn(3, 20))
    torch.library.opcheck(torch.ops.torchloom_quantize.xnor_popcount_matmul.default, (a, b, 20))


@pytest.mark.parametrize("kind", ["biper", "ste"])
def test_packed_linear_matches_trained_layer(kind: str, device: str) -> None:
    if kind == "biper":
        layer = BiPerLinear(37, 11, freq=15.0, stage=2).to(device)
    else:
        layer = SignSTELinear(37, 11, clip=1.0).to(device)
    with torch.no_grad():
        layer.alpha.uniform_(0.5, 2.0)
    layer.eval()
    packed = PackedBinaryLinear.from_binary(layer)
    x = torch.randn(13, 37, device=device)
    torch.testing.assert_close(packed(x), layer(x))
    assert packed.packed_weight.numel() == 11 * 5  # 37 signs -> 5 bytes per row
    other = PackedBinaryLinear.from_binary(SignSTELinear(37, 11).to(device))
    other.load_state_dict(packed.state_dict())
    torch.testing.assert_close(other(x), packed(x))


def test_packed_linear_full_precision_input() -> None:
    layer = SignSTELinear(10, 4, binarize_input=False).eval()
    x = torch.randn(3, 10)
    torch.testing.assert_close(PackedBinaryLinear.from_binary(layer)(x), layer(x))


def test_bad_input() -> None:
    a = pack_signs(torch.randn(2, 16))
    with pytest.raises(TypeError, match="a must be a uint8"):
        xnor_popcount_matmul(torch.zeros(2, 2), a, 16)
    with pytest.raises(ValueError, match="ceil"):
        xnor_popcount_matmul(a, a, 30)
    with pytest.raises(ValueError, match="n must"):
        xnor_popcount_matmul(a, a, 0)
    with pytest.raises(ValueError, match="stage 2"):
        PackedBinaryLinear.from_binary(BiPerLinear(4, 2, stage=1))
    with pytest.raises(TypeError, match="layer"):
        PackedBinaryLinear.from_binary(torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="features"):
        PackedBinaryLinear.from_binary(SignSTELinear(4, 2))(torch.randn(2, 5))
