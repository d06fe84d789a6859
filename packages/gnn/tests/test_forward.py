"""ForwardGNN: layer-local gradients, virtual nodes, equivariance, accuracy vs backprop."""

from __future__ import annotations

import pytest
import torch

from torchloom.gnn.data import citation_graph
from torchloom.gnn.forward import ForwardGNN, add_virtual_nodes, check_graph


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return citation_graph(
        n_nodes=300, n_classes=3, per_class=10, n_val=30, generator=torch.Generator().manual_seed(0)
    )


def test_virtual_nodes_link_each_training_node_to_its_class(graph) -> None:  # type: ignore[no-untyped-def]
    xa, ea = add_virtual_nodes(graph.x, graph.edge_index, graph.y, graph.train_mask, 3)
    n = graph.num_nodes
    assert xa.shape == (n + 3, graph.num_features)
    extra = ea[:, graph.edge_index.shape[1] :]
    src, dst = extra
    to_virtual = dst >= n
    assert torch.equal(graph.y[src[to_virtual]] + n, dst[to_virtual])
    assert int(to_virtual.sum()) == int(graph.train_mask.sum())
    c0 = graph.train_mask & (graph.y == 0)
    torch.testing.assert_close(xa[n], graph.x[c0].mean(0))


@pytest.mark.parametrize("mode", ["sf", "ff"])
def test_no_gradient_crosses_layers(graph, mode: str) -> None:  # type: ignore[no-untyped-def]
    m = ForwardGNN(graph.num_features, 16, 3, 3, mode=mode, dropout=0.0)  # type: ignore[arg-type]
    hs, ei = m._inputs(graph.x, graph.edge_index, graph.y, graph.train_mask, None)
    h = hs[0]
    outs = []
    for i in range(3):
        h = m._layer(i, h.detach(), ei)
        outs.append(h)
    outs[-1].pow(2).sum().backward()  # a loss on the top layer only
    assert all(p.grad is None for p in m.convs[0].parameters())
    assert all(p.grad is None for p in m.convs[1].parameters())
    assert any(
        p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.convs[2].parameters()
    )


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat"])
def test_permutation_equivariance(graph, conv: str) -> None:  # type: ignore[no-untyped-def]
    m = ForwardGNN(graph.num_features, 16, 2, 3, conv=conv, dropout=0.0).eval()  # type: ignore[arg-type]
    perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(1))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    p1 = m.predict_proba(graph.x, graph.edge_index, graph.y, graph.train_mask)
    p2 = m.predict_proba(
        graph.x[perm], inv[graph.edge_index], graph.y[perm], graph.train_mask[perm]
    )
    torch.testing.assert_close(p2, p1[perm], rtol=1e-4, atol=1e-5)


def test_sf_training_decreases_loss_and_learns(graph) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    m = ForwardGNN(graph.num_features, 32, 2, 3)
    hist = m.fit(graph.x, graph.edge_index, graph.y, graph.train_mask, epochs=40)
    assert hist[-1] < 0.6 * hist[0]
    acc = (m.predict(graph.x, graph.edge_index) == graph.y)[graph.test_mask].float().mean()
    assert float(acc) > 0.8  # 3 classes: chance is 1/3


def test_bad_input(graph) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="outside"):
        check_graph(graph.x, torch.tensor([[0, 1], [1, 10_000]]))
    with pytest.raises(ValueError, match=r"y must have shape \(300,\)"):
        check_graph(graph.x, graph.edge_index, graph.y[:10])
    with pytest.raises(TypeError, match="integer class labels"):
        check_graph(graph.x, graph.edge_index, graph.y.float())
    with pytest.raises(ValueError, match="conv must be"):
        ForwardGNN(4, 4, 1, 2, conv="gin")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="call fit first"):
        ForwardGNN(graph.num_features, 4, 1, 3).predict(graph.x, graph.edge_index)
