"""LPGNAS: quantised forward == fake-quant reference, PyG equivalences, search and sizes."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv
from torch_geometric.utils import to_torch_coo_tensor

from torchloom.gnn.data import citation_graph
from torchloom.gnn.lpgnas import (
    LPGNAS,
    LayerChoice,
    QuantGNN,
    QuantGNNLayer,
    SearchSpace,
    propagate,
    quantize_bits,
)
from torchloom.quantize import quantized_size_bits, uniform_quantize


def _graph(n: int = 60):  # type: ignore[no-untyped-def]
    return citation_graph(
        n_nodes=n,
        n_words=40,
        words_per_node=6,
        per_class=3,
        n_val=15,
        generator=torch.Generator().manual_seed(0),
    )


@pytest.mark.parametrize("attention", ["constant", "gcn", "gat"])
@pytest.mark.parametrize("bits", [(2, 4), (8, 3), (32, 32)])
def test_quantised_layer_equals_fake_quant_reference(attention: str, bits: tuple[int, int]) -> None:
    """The layer's forward equals a dense hand-written reference on quantised tensors."""
    data = _graph(30)
    wb, ab = bits
    torch.manual_seed(0)
    choice = LayerChoice(attention, "add", "tanh", 6, wb, ab)  # type: ignore[arg-type]
    layer = QuantGNNLayer(data.num_features, choice).double()
    x = torch.randn(data.num_nodes, data.num_features, dtype=torch.float64)
    out = layer(x, data.edge_index)
    n = data.num_nodes
    xq = x if ab >= 32 else uniform_quantize(x, ab)
    w = layer.lin.weight
    wq = w if wb >= 32 else uniform_quantize(w, wb, w.shape[1])
    h = xq @ wq.T
    a = torch.zeros(n, n, dtype=torch.float64)
    a[data.edge_index[1], data.edge_index[0]] = 1.0
    a += torch.eye(n, dtype=torch.float64)
    if attention == "gcn":
        d = a.sum(1) ** -0.5
        a = d[:, None] * a * d[None, :]
    elif attention == "gat":
        assert layer.att_src is not None and layer.att_dst is not None
        s_ = layer.att_src if wb >= 32 else uniform_quantize(layer.att_src, wb)
        d_ = layer.att_dst if wb >= 32 else uniform_quantize(layer.att_dst, wb)
        e = torch.nn.functional.leaky_relu((h @ d_)[:, None] + (h @ s_)[None, :], 0.2)
        e = e.masked_fill(a == 0, -float("inf"))
        a = torch.softmax(e, 1)
    ref = torch.tanh(a @ h + layer.bias)
    torch.testing.assert_close(out, ref)


def test_full_precision_gcn_layer_matches_pyg_gcnconv() -> None:
    data = _graph()
    torch.manual_seed(0)
    layer = QuantGNNLayer(data.num_features, LayerChoice("gcn", "add", "identity", 8), last=True)
    conv = GCNConv(data.num_features, 8)
    conv.lin.weight.data.copy_(layer.lin.weight.data)
    conv.bias.data.copy_(layer.bias.data)
    torch.testing.assert_close(layer(data.x, data.edge_index), conv(data.x, data.edge_index))


def test_full_precision_gat_layer_matches_pyg_gatconv() -> None:
    data = _graph()
    torch.manual_seed(0)
    layer = QuantGNNLayer(data.num_features, LayerChoice("gat", "add", "identity", 8), last=True)
    conv = GATConv(data.num_features, 8, heads=1)
    conv.lin.weight.data.copy_(layer.lin.weight.data)
    assert layer.att_src is not None and layer.att_dst is not None
    conv.att_src.data.copy_(layer.att_src.data.view(1, 1, -1))
    conv.att_dst.data.copy_(layer.att_dst.data.view(1, 1, -1))
    conv.bias.data.copy_(layer.bias.data)
    torch.testing.assert_close(layer(data.x, data.edge_index), conv(data.x, data.edge_index))


@pytest.mark.parametrize("aggregation", ["add", "mean", "max"])
def test_propagate_permutation_equivariant(aggregation: str) -> None:
    data = _graph()
    torch.manual_seed(0)
    h = torch.randn(data.num_nodes, 5)
    a_s, a_d = torch.randn(5), torch.randn(5)
    perm = torch.randperm(data.num_nodes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    for att in ("constant", "gcn", "gat"):
        out = propagate(h, data.edge_index, att, aggregation, a_s, a_d)
        out_p = propagate(h[perm], inv[data.edge_index], att, aggregation, a_s, a_d)
        torch.testing.assert_close(out_p, out[perm])


def test_size_bits_counts_codes_scales_and_bias() -> None:
    model = QuantGNN(40, 5, [LayerChoice("gcn", "add", "relu", 16, 4, 8)] * 2)
    expect = quantized_size_bits(40 * 16, 4, 40) + 16 * 32
    expect += quantized_size_bits(16 * 5, 4, 16) + 5 * 32
    assert model.size_bits() == expect
    fp = QuantGNN(40, 5, [LayerChoice("gat", "add", "relu", 16, 32, 32)] * 2)
    assert fp.size_bits() == 32 * (40 * 16 + 16 + 2 * 16 + 16 * 5 + 5 + 2 * 5)


def test_quantize_bits_levels_and_identity() -> None:
    x = torch.randn(4, 9)
    assert quantize_bits(x, 32) is x
    q = quantize_bits(x, 2, 9)
    assert all(row.unique().numel() <= 4 for row in q)


def test_supernet_with_one_hot_choices_equals_derived_network() -> None:
    """A super-network whose every choice logit is one-hot (large) computes the derived
    network given the same weights."""
    data = _graph()
    space = SearchSpace(hidden=(4, 8), weight_bits=(2, 32), act_bits=(4, 32))
    torch.manual_seed(0)
    net = LPGNAS(data.num_features, 5, n_layers=2, space=space, dropout=0.0).double()
    for p in net.arch_parameters():
        p.data.normal_()
        p.data[p.data.argmax()] += 1e4
    net.eval()
    choices = net.derive()
    fixed = QuantGNN(data.num_features, 5, choices, dropout=0.0).double().eval()
    h = choices[0].out_channels
    for sl, fl in zip(net.layers, fixed.layers):
        rows = fl.lin.weight.shape[0]
        w = sl.lin.weight.data[:rows, : fl.lin.weight.shape[1]]
        fl.lin.weight.data.copy_(w)
        fl.bias.data.copy_(sl.bias.data[:rows])
        if fl.att_src is not None:
            fl.att_src.data.copy_(sl.att_src.data[:rows])
            fl.att_dst.data.copy_(sl.att_dst.data[:rows])
    # the unused hidden channels of the first super-layer are masked to zero, so the second
    # super-layer's extra input columns do not matter
    x = data.x.double()
    with torch.no_grad():
        first = net.layers[0](x, data.edge_index, net.tau)
        assert (first[:, h:] == 0).all()
        if choices[0].weight_bits >= 32 and choices[1].weight_bits >= 32:
            torch.testing.assert_close(net(x, data.edge_index), fixed(x, data.edge_index))
        torch.testing.assert_close(first[:, :h], fixed.layers[0](x, data.edge_index))


def test_search_size_price_shrinks_expected_size() -> None:
    data = _graph(80)
    space = SearchSpace(
        attention=("gcn",),
        aggregation=("add",),
        activation=("relu",),
        hidden=(8, 32),
        weight_bits=(2, 32),
        act_bits=(32,),
    )
    sizes = []
    for gamma in (0.0, 5.0):
        torch.manual_seed(0)
        net = LPGNAS(data.num_features, 5, space=space)
        hist = net.search(
            data.x, data.edge_index, data.y, data.train_mask, data.val_mask, 30, gamma, arch_lr=0.05
        )
        sizes.append(hist[-1]["expected_size_bits"])
    assert sizes[1] < 0.5 * sizes[0]
    derived = net.derive()
    assert derived[0].weight_bits == 2 and derived[0].out_channels == 8


def test_bad_inputs() -> None:
    data = _graph(30)
    with pytest.raises(ValueError, match="unknown SearchSpace"):
        SearchSpace(attention=("transformer",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        SearchSpace(hidden=())
    with pytest.raises(ValueError, match="at least one layer"):
        QuantGNN(4, 2, [])
    net = LPGNAS(data.num_features, 5)
    bad = data.edge_index.clone()
    bad[1, 0] = 1000
    with pytest.raises(ValueError, match="outside"):
        net.search(data.x, bad, data.y, data.train_mask, data.val_mask, 1)
    with pytest.raises(TypeError, match="integer class labels"):
        net.search(data.x, data.edge_index, data.y.float(), data.train_mask, data.val_mask, 1)


def test_quant_gnn_accepts_sparse_adjacency_like_dense() -> None:
    data = _graph()
    torch.manual_seed(0)
    model = QuantGNN(data.num_features, 5, [LayerChoice("gat", "mean", "elu", 8, 4, 4)] * 2).eval()
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), size=data.num_nodes)
    torch.testing.assert_close(model(data.x, adj_t), model(data.x, data.edge_index))


def test_search_warmup_leaves_architecture_uniform() -> None:
    data = _graph(40)
    torch.manual_seed(0)
    net = LPGNAS(data.num_features, 5, space=SearchSpace(hidden=(4, 8)))
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    net.search(data.x, data.edge_index, data.y, data.train_mask, data.val_mask, 3, 1.0, warmup=3)
    assert all((p == 0).all() for p in net.arch_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(w0, net.weight_parameters()))
