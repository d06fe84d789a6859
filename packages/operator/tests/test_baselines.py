"""FNO's spectral layer is a circular convolution; FNO and DeepONet shapes and errors."""

from __future__ import annotations

import pytest
import torch

from torchloom.operator.baselines import DeepONet, FNO2d, SpectralConv2d, mlp


def test_spectral_conv_is_translation_equivariant_and_low_pass() -> None:
    torch.manual_seed(0)
    k = SpectralConv2d(2, 3, modes=3).double()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(k(torch.roll(x, (3, 5), (2, 3))), torch.roll(k(x), (3, 5), (2, 3)))
    # a pure high frequency (above the kept modes) is filtered out
    j = torch.arange(12, dtype=torch.float64)
    high = (
        torch.cos(2 * torch.pi * 5 * j / 12)[None, :]
        .expand(12, 12)[None, None]
        .expand(1, 2, 12, 12)
    )
    assert float(k(high).detach().abs().max()) < 1e-12


def test_fno_and_deeponet_shapes() -> None:
    torch.manual_seed(0)
    assert FNO2d(1, 2, width=4, modes=3, depth=2)(torch.randn(3, 1, 10, 10)).shape == (3, 2, 10, 10)
    net = DeepONet(5, 2, width=8, depth=2, basis=6)
    assert net(torch.randn(3, 5), torch.rand(7, 2)).shape == (3, 7)
    assert net(torch.randn(3, 5), torch.rand(3, 7, 2)).shape == (3, 7)
    with pytest.raises(ValueError, match="x must"):
        FNO2d(1, 1, width=4, modes=2)(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        SpectralConv2d(1, 1, 5)(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="sizes"):
        mlp([3])
