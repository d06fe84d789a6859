"""DeepRobust peer checks: the loader works without torch_sparse and leaves ``sys.modules``
clean; our DICE perturbs the same statistics as DeepRobust's; our meta-gradient PGD attack and
DeepRobust's Metattack flip the same kind of pairs."""

from __future__ import annotations

import sys

import pytest
import torch

from torchloom.gnn.data import citation_graph
from torchloom.gnn.stable import _upper, dice_attack, pgd_attack

pytest.importorskip("deeprobust")
pytest.importorskip("scipy")

from torchloom.gnn.peers import (
    deeprobust_dice,
    deeprobust_metattack,
    load_deeprobust,
)


def _diff(clean: torch.Tensor, attacked: torch.Tensor, n: int) -> tuple[set, set]:
    a = set(map(tuple, _upper(clean, n).T.tolist()))
    b = set(map(tuple, _upper(attacked, n).T.tolist()))
    return a - b, b - a  # (removed, added)


def test_loader_imports_attacks_and_restores_sys_modules() -> None:
    before = {k for k in sys.modules if k.startswith("deeprobust.graph.global_attack")}
    dr = load_deeprobust()
    for name in ("DICE", "Random", "Metattack", "MetaApprox", "PGDAttack", "MinMax"):
        assert issubclass(dr[name], dr["BaseAttack"]), name
    after = {k for k in sys.modules if k.startswith("deeprobust.graph.global_attack")}
    assert after == before  # no stand-in package or partial submodules left behind
    assert load_deeprobust()["DICE"] is dr["DICE"]  # cached


def test_dice_perturbs_the_same_statistics_as_deeprobust() -> None:
    g = torch.Generator().manual_seed(0)
    d = citation_graph(n_nodes=200, avg_degree=4.0, homophily=0.8, n_words=100, generator=g)
    n, y = d.num_nodes, d.y
    budget = int(0.2 * d.edge_index.shape[1] // 2)
    share = {"ours": [], "deeprobust": []}
    homophily = {"ours": [], "deeprobust": []}
    for seed in range(6):
        ours = dice_attack(d.edge_index, y, budget, generator=torch.Generator().manual_seed(seed))
        peer = deeprobust_dice(d.edge_index, y, budget, seed=seed)
        for name, e in (("ours", ours), ("deeprobust", peer)):
            removed, added = _diff(d.edge_index, e, n)
            # DICE: deletions only inside classes, insertions only between classes
            assert all(y[i] == y[j] for i, j in removed), name
            assert all(y[i] != y[j] for i, j in added), name
            total = len(removed) + len(added)
            # DeepRobust can count a pair drawn as (u, v) and (v, u) in one batch twice
            assert budget - 2 <= total <= budget, (name, total, budget)
            if name == "ours":
                assert total == budget
            share[name].append(len(removed) / total)
            p = _upper(e, n)
            homophily[name].append(float((y[p[0]] == y[p[1]]).float().mean()))
    # ours splits the budget in half; DeepRobust draws Binomial(budget, 1/2) deletions
    sd = (0.25 / (6 * budget)) ** 0.5
    mean = {k: sum(v) / len(v) for k, v in share.items()}
    assert abs(mean["ours"] - 0.5) < 0.01
    assert abs(mean["deeprobust"] - 0.5) < 4 * sd
    h = {k: sum(v) / len(v) for k, v in homophily.items()}
    assert abs(h["ours"] - h["deeprobust"]) < 0.03, h


@pytest.mark.slow
def test_meta_pgd_and_metattack_flip_the_same_kind_of_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    d = citation_graph(n_nodes=150, avg_degree=4.0, homophily=0.8, n_words=100, generator=g)
    n, y = d.num_nodes, d.y
    budget = 20
    ours = pgd_attack(d.x, d.edge_index, y, d.train_mask, budget, steps=30, inner_steps=20)
    peer = deeprobust_metattack(d.x, d.edge_index, y, d.train_mask, budget, train_iters=30)
    for name, e in (("ours", ours), ("deeprobust", peer)):
        removed, added = _diff(d.edge_index, e, n)
        assert len(removed) + len(added) <= budget
        # both poisoners mostly insert edges between classes (the known Metattack signature)
        inter = sum(y[i] != y[j] for i, j in added)
        assert len(added) >= 0.7 * budget and inter >= 0.8 * len(added), (name, removed, added)
