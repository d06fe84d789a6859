"""Offline graph data: a citation-like generator (homophilous SBM + bag-of-words features).

Real citation sets (Planetoid, OGB) need a network; this generator gives the same structure —
communities that mostly cite within themselves, and word features whose distribution depends on
the class — at any size, seeded.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from torchloom.core.checks import check_probability

__all__ = ["citation_graph", "split_masks"]


def split_masks(
    y: torch.Tensor, per_class: int, n_val: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Planetoid-style split: ``per_class`` training nodes per class, ``n_val`` validation nodes,
    the rest test.

    Args:
        y: integer labels ``(N,)``.
        per_class: training nodes per class.
        n_val: validation nodes.
        generator: source of randomness.

    Returns:
        Boolean masks ``(train, val, test)``, each ``(N,)``.
    """
    n = y.numel()
    perm = torch.randperm(n, generator=generator)
    train = torch.zeros(n, dtype=torch.bool)
    for c in y.unique():
        idx = perm[y[perm] == c][:per_class]
        train[idx] = True
    rest = perm[~train[perm]]
    val = torch.zeros(n, dtype=torch.bool)
    val[rest[:n_val]] = True
    test = ~(train | val)
    return train, val, test


def citation_graph(
    n_nodes: int = 600,
    n_classes: int = 5,
    avg_degree: float = 6.0,
    homophily: float = 0.85,
    n_words: int = 300,
    words_per_node: int = 20,
    topic_strength: float = 0.6,
    per_class: int = 20,
    n_val: int = 100,
    generator: torch.Generator | None = None,
    topic_size: int | None = None,
    n_subtopics: int = 1,
) -> Data:
    """A homophilous stochastic block model with class-correlated bag-of-words features.

    Each edge stays inside its class with probability ``homophily``; each node draws
    ``words_per_node`` words, a share ``topic_strength`` from its class's topic (``topic_size``
    random words, default a fifth of the vocabulary) and the rest uniformly.

    With ``n_subtopics > 1`` every class splits into that many sub-communities (uniformly at
    random), each with its own topic: an edge that stays inside its class links two nodes of
    the same sub-community, and a node's topic words come from its sub-community's topic. Like
    papers that cite each other in a real citation graph, linked nodes then share words beyond
    their class (what feature-similarity defences such as Jaccard pruning rely on), while the
    class is harder to read from a node's own words (an MLP sees ``n_classes · n_subtopics``
    topics).

    Args:
        n_nodes: number of nodes ``N``.
        n_classes: number of classes.
        avg_degree: expected mean degree.
        homophily: probability that an edge stays inside its class.
        n_words: vocabulary size (feature dimension).
        words_per_node: words drawn per node.
        topic_strength: share of a node's words drawn from its class's topic.
        per_class: training nodes per class.
        n_val: validation nodes.
        generator: source of randomness.
        topic_size: words per class (or sub-community) topic (default ``n_words // 5``).
        n_subtopics: sub-communities per class (1: the plain class-level model).

    Returns:
        ``Data(x (N, n_words) binary, edge_index (2, E) undirected, y (N,), train_mask,
        val_mask, test_mask)``.
    """
    if n_nodes < n_classes * (per_class + 1):
        raise ValueError(
            f"n_nodes={n_nodes} too small for {n_classes} classes x {per_class} training nodes"
        )
    check_probability(homophily, "homophily")
    check_probability(topic_strength, "topic_strength")
    if isinstance(n_subtopics, bool) or not isinstance(n_subtopics, int) or n_subtopics < 1:
        raise ValueError(f"n_subtopics must be an int >= 1, got {n_subtopics!r}")
    g = generator
    y = torch.randint(0, n_classes, (n_nodes,), generator=g)
    comm = y  # community of each node: its class, or (class, sub-community)
    if n_subtopics > 1:
        comm = y * n_subtopics + torch.randint(0, n_subtopics, (n_nodes,), generator=g)
    n_comm = n_classes * n_subtopics
    n_edges = int(n_nodes * avg_degree / 2)
    src = torch.randint(0, n_nodes, (n_edges,), generator=g)
    same = torch.rand(n_edges, generator=g) < homophily
    by_comm = [torch.nonzero(comm == c).squeeze(1) for c in range(n_comm)]
    dst = torch.randint(0, n_nodes, (n_edges,), generator=g)
    for c in range(n_comm):
        sel = same & (comm[src] == c)
        if n_subtopics > 1 and not bool(sel.any()):
            continue
        pick = torch.randint(0, len(by_comm[c]), (int(sel.sum()),), generator=g)
        dst[sel] = by_comm[c][pick]
    keep = src != dst
    edge_index = to_undirected(torch.stack([src[keep], dst[keep]]), num_nodes=n_nodes)
    if topic_size is None:
        topic_size = max(1, n_words // 5)
    elif not 1 <= topic_size <= n_words:
        raise ValueError(f"topic_size must lie in [1, n_words={n_words}], got {topic_size}")
    topics = torch.stack([torch.randperm(n_words, generator=g)[:topic_size] for _ in range(n_comm)])
    x = torch.zeros(n_nodes, n_words)
    n_topic = round(words_per_node * topic_strength)
    for i in range(n_nodes):
        t = topics[comm[i]][torch.randint(0, topic_size, (n_topic,), generator=g)]
        u = torch.randint(0, n_words, (words_per_node - n_topic,), generator=g)
        x[i, torch.cat([t, u])] = 1.0
    train, val, test = split_masks(y, per_class, n_val, g)
    return Data(x=x, edge_index=edge_index, y=y, train_mask=train, val_mask=val, test_mask=test)
