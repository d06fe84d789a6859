"""Neural snowflake: metric axioms for random parameters (hypothesis), gradients, graph
distances, distortion and the embedding fit."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch_geometric.utils import from_networkx

from torchloom.gnn.snowflake import (
    SnowflakeEmbedding,
    SnowflakeMetric,
    embedding_distortion,
    fit_graph_embedding,
    graph_distances,
)


def _randomise(model: torch.nn.Module, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 3.0),
    in_dim=st.integers(1, 5),
    dim=st.integers(1, 4),
)
def test_metric_axioms_random_parameters(seed: int, scale: float, in_dim: int, dim: int) -> None:
    torch.manual_seed(seed)
    model = SnowflakeEmbedding(in_dim, dim, hidden=16, n_units=3).double()
    _randomise(model, seed, scale)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(12, in_dim, generator=g, dtype=torch.float64) * 3
    d = model(x)
    tol = 1e-9 * (1 + d.abs().max())
    assert torch.all(d >= 0)
    assert torch.allclose(d.diagonal(), torch.zeros(12, dtype=d.dtype), atol=1e-12)
    assert torch.allclose(d, d.T, atol=1e-12)
    # triangle inequality over all triples: d(i,k) <= d(i,j) + d(j,k)
    lhs = d.unsqueeze(1)  # (i, 1, k)
    rhs = d.unsqueeze(2) + d.unsqueeze(0)  # (i, j, k)
    assert torch.all(lhs <= rhs + tol)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    a=st.floats(0.0, 50.0),
    b=st.floats(0.0, 50.0),
)
def test_snowflake_transform_subadditive_and_monotone(seed: int, a: float, b: float) -> None:
    sf = SnowflakeMetric(n_units=4).double().requires_grad_(False)
    _randomise(sf, seed, 2.0)
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    tol = 1e-10 * (1 + float(sf(ta + tb)))
    assert float(sf(ta + tb)) <= float(sf(ta) + sf(tb)) + tol
    assert float(sf(torch.maximum(ta, tb))) >= float(sf(torch.minimum(ta, tb))) - tol
    assert float(sf(torch.zeros((), dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)


def test_alpha_in_unit_interval_and_snowflake_is_not_linear() -> None:
    sf = SnowflakeMetric(n_units=4)
    assert torch.all((sf.alpha > 0) & (sf.alpha < 1))
    d = torch.tensor([1.0, 2.0])
    out = sf(d)
    assert float(out[1]) < 2 * float(out[0])  # strictly concave part present


def test_gradients_flow_to_all_parameters_including_coincident_points() -> None:
    torch.manual_seed(0)
    model = SnowflakeEmbedding(3, 2, hidden=8)
    x = torch.randn(5, 3)
    x = torch.cat([x, x[:1]])  # a duplicated point: distance exactly 0
    model(x).sum().backward()
    for name, p in model.named_parameters():
        if name == "raw_scale":
            continue  # unused by the snowflake geometry
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_euclidean_metric_is_scaled_norm() -> None:
    torch.manual_seed(0)
    model = SnowflakeEmbedding(3, 2, hidden=8, metric="euclidean")
    x = torch.randn(4, 3)
    z = model.encode(x)
    expected = torch.cdist(z, z) * torch.nn.functional.softplus(model.raw_scale)
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert torch.allclose(model.distance(x, x.flip(0)), expected.flip(1).diagonal(), atol=1e-5)


def test_graph_distances_match_networkx() -> None:
    g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    d = graph_distances(from_networkx(g).edge_index, g.number_of_nodes())
    ref = dict(nx.all_pairs_shortest_path_length(g))
    for i in range(12):
        for j in range(12):
            assert d[i, j] == ref[i][j]


def test_graph_distances_rejects_disconnected_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="disconnected"):
        graph_distances(torch.tensor([[0, 2], [1, 3]]))
    with pytest.raises(ValueError, match="shape"):
        graph_distances(torch.zeros(3, 2, dtype=torch.long))


def test_distortion_is_scale_aware() -> None:
    true = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    exact = embedding_distortion(true, true)
    assert exact["avg"] == pytest.approx(0.0) and exact["ratio"] == pytest.approx(1.0)
    scaled = embedding_distortion(2 * true, true)
    assert scaled["avg"] == pytest.approx(1.0) and scaled["avg_scaled"] == pytest.approx(0.0)
    assert scaled["ratio"] == pytest.approx(1.0)
    bent = true.clone()
    bent[0, 2] = bent[2, 0] = 1.0
    assert embedding_distortion(bent, true)["ratio"] == pytest.approx(2.0)


def test_fit_reduces_loss_and_distortion_and_stays_metric() -> None:
    g = nx.balanced_tree(2, 3)
    d = graph_distances(from_networkx(g).edge_index, g.number_of_nodes())
    torch.manual_seed(0)
    fit = fit_graph_embedding(d, dim=2, steps=150)
    assert fit.losses[-1] < 0.5 * fit.losses[0]
    assert fit.distortion["avg"] < 0.5
    with torch.no_grad():
        learned = fit.model(torch.eye(d.shape[0]))
    assert torch.all(learned.unsqueeze(1) <= learned.unsqueeze(2) + learned.unsqueeze(0) + 1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        SnowflakeEmbedding(2, 2, metric="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_units"):
        SnowflakeMetric(n_units=0)
    with pytest.raises(ValueError, match="square"):
        fit_graph_embedding(torch.ones(2, 3))


def test_latent_graph_samples_k_distinct_non_self_neighbours() -> None:
    from torchloom.gnn.snowflake import LatentGraph

    torch.manual_seed(0)
    layer = LatentGraph(6, latent_dim=3, k=4)
    x = torch.randn(20, 6)
    for mode in (True, False):
        layer.train(mode)
        ei, log_p = layer(x, torch.Generator().manual_seed(1))
        assert ei.shape == (2, 80) and log_p.shape == (20, 4)
        assert (ei[0] != ei[1]).all()
        for i in range(20):
            src = ei[0, ei[1] == i]
            assert src.numel() == 4 and src.unique().numel() == 4
        assert (log_p <= 0).all()
    # rows of p are distributions
    torch.testing.assert_close(layer.log_probs(x).exp().sum(1), torch.ones(20))


def test_latent_graph_eval_is_top_k_and_permutation_equivariant() -> None:
    from torchloom.gnn.snowflake import LatentGraph

    torch.manual_seed(0)
    layer = LatentGraph(5, latent_dim=2, k=3, metric="euclidean").double().eval()
    x = torch.randn(15, 5, dtype=torch.float64)
    ei, _ = layer(x)
    lp = layer.log_probs(x)
    top = lp.topk(3, 1).indices
    assert all(set(ei[0, ei[1] == i].tolist()) == set(top[i].tolist()) for i in range(15))
    perm = torch.randperm(15)
    ei_p, _ = layer(x[perm])
    edges = {(int(a), int(b)) for a, b in ei.T}
    edges_p = {(int(perm[a]), int(perm[b])) for a, b in ei_p.T}
    assert edges == edges_p


def test_latent_graph_loss_gradient_sign() -> None:
    """The graph loss raises log p of edges used by correct nodes, lowers it for wrong ones."""
    from torchloom.gnn.snowflake import LatentGraph

    log_p = torch.full((4, 2), -1.0, requires_grad=True)
    correct = torch.tensor([True, True, False, False])
    LatentGraph.graph_loss(log_p, correct, torch.ones(4, dtype=torch.bool)).backward()
    assert log_p.grad is not None
    assert (log_p.grad[:2] < 0).all() and (log_p.grad[2:] > 0).all()


def test_latent_graph_gnn_trains_and_reaches_encoder() -> None:
    from torchloom.gnn.snowflake import LatentGraphGNN, fit_latent_graph

    torch.manual_seed(0)
    x = torch.randn(40, 6)
    y = (x[:, 0] > 0).long()
    train = torch.zeros(40, dtype=torch.bool)
    train[:20] = True
    model = LatentGraphGNN(6, 2, k=3, hidden=8)
    before = [p.detach().clone() for p in model.graph.parameters()]
    acc = fit_latent_graph(
        model, x, y, train, epochs=30, generator=torch.Generator().manual_seed(0)
    )
    assert acc > 0.5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.graph.parameters()))
    with pytest.raises(TypeError, match="integer class labels"):
        fit_latent_graph(model, x, y.float(), train, epochs=1)
