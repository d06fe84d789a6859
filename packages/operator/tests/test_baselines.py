"""FNO's spectral layer is a circular convolution; FNO and DeepONet shapes and errors."""

from __future__ import annotations

import pytest
import torch

from torchloom.operator.baselines import DeepONet, FNO2d, SpectralConv2d


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


def test_spectral_conv_equals_neuralop_with_the_same_weights() -> None:
    """Our Fourier layer against the peer's: same kept modes, same output on an even grid."""
    sc = pytest.importorskip("neuralop.layers.spectral_convolution")
    torch.manual_seed(0)
    m = 3
    ours = SpectralConv2d(2, 3, modes=m)
    peer = sc.SpectralConv(2, 3, n_modes=(2 * m, 2 * m))
    w = torch.zeros_like(peer.weight.tensor)  # (in, out, 2m, m + 1): rows are freqs -m..m-1
    w[:, :, m:, :m] = ours.weight[0].detach()  # frequencies 0..m-1
    w[:, :, :m, :m] = ours.weight[1].detach()  # frequencies -m..-1
    with torch.no_grad():
        peer.weight.tensor.copy_(w)
        peer.bias.zero_()
    x = torch.randn(2, 2, 12, 10)
    torch.testing.assert_close(peer(x), ours(x), rtol=1e-4, atol=1e-5)


def test_neuralop_fno_on_odd_grids_matches_the_even_padded_run() -> None:
    pytest.importorskip("neuralop")
    from torchloom.operator.baselines import EvenGridFNO, neuralop_fno

    torch.manual_seed(0)
    net = neuralop_fno(1, 1, width=6, modes=3, depth=2)
    assert isinstance(net, EvenGridFNO)
    x = torch.randn(2, 1, 15, 15)
    y = net(x)
    assert y.shape == (2, 1, 15, 15)
    xp = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
    torch.testing.assert_close(y, net.inner(xp)[..., :15, :15])
    # even grids pass through unchanged
    x16 = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(net(x16), net.inner(x16))
    with pytest.raises(ValueError, match="modes"):
        neuralop_fno(modes=0)
