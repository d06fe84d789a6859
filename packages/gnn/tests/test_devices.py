"""Every model and graph operation gives the CPU's values and gradients on the test device.

On a CPU-only machine these tests check determinism; with ``TORCHLOOM_DEVICE=cuda`` they catch
CPU-only code paths (tensors made without ``device=``, host generators, CPU-only kernels).
"""

from __future__ import annotations

import torch
from torch_geometric.utils import to_undirected

from torchloom.core.testing import assert_matches_cpu
from torchloom.gnn import (
    LPGNAS,
    AdvancedGCN,
    ForwardGNN,
    LatentGraph,
    SnowflakeEmbedding,
    SnowflakeMetric,
    STABLEEncoder,
    dice_attack,
    graph_distances,
    jaccard_prune,
    recover_edges,
)


def _graph(n: int = 14, f: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, f, generator=g) > 0.5).double()
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    chords = torch.randint(0, n, (2, n), generator=g)
    edge_index = to_undirected(torch.cat([ring, chords[:, chords[0] != chords[1]]], 1))
    y = torch.arange(n) % 3
    return x, edge_index, y


def test_gcn_models_match_cpu(device: torch.device) -> None:
    x, ei, _ = _graph()
    torch.manual_seed(0)
    for model in (
        AdvancedGCN(6, 8, 3).double().eval(),
        STABLEEncoder(6, hidden=8).double().eval(),
        LPGNAS(6, 3).double().eval(),
    ):
        assert_matches_cpu(lambda m, x, ei: m(x, ei), [model, x, ei], device)
    fwd = ForwardGNN(6, 8, 2, 3, conv="gcn").double().eval()
    assert_matches_cpu(lambda m, x, ei: m.layer_outputs(x, ei), [fwd, x, ei], device)


def test_snowflake_metric_embedding_and_latent_graph_match_cpu(device: torch.device) -> None:
    x, ei, _ = _graph()
    torch.manual_seed(0)
    d = torch.rand(5, 5, dtype=torch.float64)
    assert_matches_cpu(lambda m, d: m(d), [SnowflakeMetric().double(), d], device)
    emb = SnowflakeEmbedding(6, 3, hidden=8).double()
    assert_matches_cpu(lambda m, x: m(x), [emb, x], device)
    latent = LatentGraph(6, latent_dim=3, k=2, hidden=8).double().train()
    assert_matches_cpu(
        lambda m, x: m(x, generator=torch.Generator().manual_seed(3)), [latent, x], device
    )
    assert_matches_cpu(lambda ei: graph_distances(ei, 14), [ei], device, grad=False)


def test_structure_operations_match_cpu(device: torch.device) -> None:
    x, ei, y = _graph()
    assert_matches_cpu(lambda x, ei: jaccard_prune(x, ei, 0.2), [x, ei], device, grad=False)
    kept, removed = jaccard_prune(x, ei, 0.2)
    assert_matches_cpu(
        lambda k, r: recover_edges(k, r, 0.5, 14, generator=torch.Generator().manual_seed(1)),
        [kept, removed],
        device,
        grad=False,
    )
    assert_matches_cpu(
        lambda ei, y: dice_attack(ei, y, 4, generator=torch.Generator().manual_seed(2)),
        [ei, y],
        device,
        grad=False,
    )
