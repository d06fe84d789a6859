"""The layer-wise (ProxylessNAS/FBNet) chain space: MBConv, mixed layers, discrete export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchloom.nas.blocks import (
    PROXYLESS_OPS,
    ChainSupernet,
    MBConv,
    MixedLayer,
    build_chain,
    make_chain_op,
    mbconv_ops,
)


def test_mbconv_shapes_and_parameter_count() -> None:
    m = MBConv(4, 6, 5, 3, stride=2)
    assert m(torch.randn(2, 4, 8, 8)).shape == (2, 6, 4, 4)
    hidden = 4 * 3
    expected = 4 * hidden + hidden * 25 + hidden * 6 + 2 * (2 * hidden) + 2 * 6
    assert sum(p.numel() for p in m.parameters()) == expected
    assert mbconv_ops((3, 5), (3, 6)) == ["mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6"]


def test_mixed_layer_is_residual_weighted_sum() -> None:
    layer = MixedLayer(4, ("mb_k3_e3", "mb_k5_e6", "zero")).eval()
    x = torch.randn(3, 4, 6, 6)
    w = torch.tensor([0.2, 0.5, 0.3])
    manual = x + sum(w[i] * layer.ops[i](x) for i in range(3))
    assert torch.allclose(layer(x, w), manual, atol=1e-6)
    only = layer(x, w, active=torch.tensor([1]))
    assert torch.allclose(only, x + w[1] * layer.ops[1](x), atol=1e-6)


@pytest.mark.parametrize("stages", [((4, 2, 1),), ((4, 1, 1), (8, 2, 2)), ((6, 1, 2), (6, 1, 1))])
def test_build_chain_equals_supernet_under_one_hot(
    stages: tuple[tuple[int, int, int], ...],
) -> None:
    g = torch.Generator().manual_seed(1)
    net = ChainSupernet(stem_channels=4, stages=stages, generator=g)
    net.alpha.data.normal_(generator=g)
    choice = net.derive()
    dis = build_chain(choice, net)
    one_hot = F.one_hot(net.alpha.argmax(-1), len(PROXYLESS_OPS)).float()
    x = torch.randn(5, 1, 8, 8)
    for mode in (True, False):
        net.train(mode)
        dis.train(mode)
        assert torch.allclose(net(x, one_hot), dis(x), atol=1e-5)
    # every layer holds only the chosen op: parameter count matches a fresh build
    fresh = build_chain(choice, stem_channels=4, stages=stages)
    n_dis = sum(p.numel() for p in dis.parameters())
    assert n_dis == sum(p.numel() for p in fresh.parameters())
    n_sup = sum(p.numel() for p in net.weight_parameters())
    assert n_dis < n_sup


def test_supernet_parameters_split() -> None:
    net = ChainSupernet()
    assert net.alpha.shape == (net.num_layers, len(PROXYLESS_OPS))
    ids = {id(p) for p in net.weight_parameters()}
    assert id(net.alpha) not in ids
    assert len(ids) + 1 == len(list(net.parameters()))
    assert net.probabilities().sum(-1).allclose(torch.ones(net.num_layers))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown chain op 'conv9'"):
        make_chain_op("conv9", 4)
    with pytest.raises(ValueError, match="unknown chain op"):
        ChainSupernet(ops=("mb_k3_e3", "sep_conv_3x3"))
    with pytest.raises(ValueError, match="repeat"):
        MixedLayer(4, ("zero", "zero"))
    with pytest.raises(ValueError, match="odd"):
        MBConv(4, 4, 4, 3)
    with pytest.raises(ValueError, match="channels"):
        ChainSupernet()(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="one per layer"):
        build_chain(["zero"])
    with pytest.raises(ValueError, match="mixture weights"):
        ChainSupernet()(torch.randn(2, 1, 8, 8), torch.ones(2, 2))
