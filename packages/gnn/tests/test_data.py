"""The citation-like generator: homophily, class-correlated words, splits, seeding."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import homophily, is_undirected

from torchloom.gnn.data import citation_graph


def test_structure_and_seeding() -> None:
    a = citation_graph(homophily=0.8, generator=torch.Generator().manual_seed(0))
    b = citation_graph(homophily=0.8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert is_undirected(a.edge_index)
    assert abs(homophily(a.edge_index, a.y) - 0.8) < 0.08
    assert not bool((a.edge_index[0] == a.edge_index[1]).any())
    masks = a.train_mask.long() + a.val_mask.long() + a.test_mask.long()
    assert bool((masks == 1).all())
    assert torch.bincount(a.y[a.train_mask]).tolist() == [20] * 5


def test_words_depend_on_class() -> None:
    d = citation_graph(topic_strength=0.6, generator=torch.Generator().manual_seed(0))
    means = torch.stack([d.x[d.y == c].mean(0) for c in range(5)])
    # each class's most frequent words are mostly its own topic: distinct across classes
    top = means.topk(20, dim=1).indices
    overlap = len(set(top[0].tolist()) & set(top[1].tolist()))
    assert overlap < 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too small"):
        citation_graph(n_nodes=20)
    with pytest.raises(ValueError, match="homophily must lie in"):
        citation_graph(homophily=1.5)


def test_subtopics_make_linked_nodes_share_words() -> None:
    def mean_overlap(n_subtopics: int) -> tuple[float, float]:
        d = citation_graph(
            n_nodes=400,
            n_words=1000,
            topic_size=40,
            topic_strength=0.4,
            n_subtopics=n_subtopics,
            generator=torch.Generator().manual_seed(0),
        )
        r, c = d.edge_index
        intra = d.y[r] == d.y[c]
        linked = (d.x[r[intra]] * d.x[c[intra]]).sum(1).mean()
        # random pairs of the same class
        g = torch.Generator().manual_seed(1)
        i = torch.randint(0, 400, (4000,), generator=g)
        j = torch.randint(0, 400, (4000,), generator=g)
        same = (d.y[i] == d.y[j]) & (i != j)
        rand = (d.x[i[same]] * d.x[j[same]]).sum(1).mean()
        return float(linked), float(rand)

    linked, rand = mean_overlap(4)
    assert linked > 1.6 * rand  # the edge carries word similarity beyond the class
    linked1, rand1 = mean_overlap(1)
    assert abs(linked1 - rand1) < 0.25 * rand1  # class-level model: an edge says no more


def test_bad_subtopics() -> None:
    with pytest.raises(ValueError, match="n_subtopics"):
        citation_graph(n_subtopics=0)
