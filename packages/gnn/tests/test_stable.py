"""STABLE: Jaccard pruning, recovery views, refinement, advanced GCN and the attacks."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import to_torch_coo_tensor

from torchloom.gnn.data import citation_graph
from torchloom.gnn.stable import (
    STABLE,
    AdvancedGCNConv,
    STABLEEncoder,
    _dense,
    _dense_norm,
    _upper,
    advanced_gcn_norm,
    dice_attack,
    jaccard_prune,
    jaccard_similarity,
    pgd_attack,
    random_attack,
    recover_edges,
    refine_graph,
)


def _pairs(ei: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in ei.T}


def _graph(n: int = 120, seed: int = 0):  # type: ignore[no-untyped-def]
    return citation_graph(
        n_nodes=n,
        n_words=60,
        words_per_node=8,
        per_class=4,
        n_val=20,
        generator=torch.Generator().manual_seed(seed),
    )


def test_jaccard_matches_brute_force() -> None:
    data = _graph()
    sim = jaccard_similarity(data.x, data.edge_index)
    for e in range(0, data.edge_index.shape[1], 7):
        i, j = data.edge_index[:, e].tolist()
        a, b = (
            set(torch.nonzero(data.x[i]).flatten().tolist()),
            set(torch.nonzero(data.x[j]).flatten().tolist()),
        )
        assert sim[e].item() == pytest.approx(len(a & b) / len(a | b))


def test_jaccard_prune_partitions_edges() -> None:
    data = _graph()
    kept, removed = jaccard_prune(data.x, data.edge_index, 0.1)
    k, r, full = _pairs(kept), _pairs(removed), _pairs(data.edge_index)
    assert not k & r and k | r == full
    assert (jaccard_similarity(data.x, kept) >= 0.1).all()
    assert (jaccard_similarity(data.x, removed) < 0.1).all()
    assert k == {(b, a) for a, b in k}  # undirected


def test_recover_edges_between_kept_and_union() -> None:
    data = _graph()
    kept, removed = jaccard_prune(data.x, data.edge_index, 0.1)
    n = data.num_nodes
    g = torch.Generator().manual_seed(0)
    assert _pairs(recover_edges(kept, removed, 0.0, n, g)) == _pairs(kept)
    assert _pairs(recover_edges(kept, removed, 1.0, n, g)) == _pairs(data.edge_index)
    half = _pairs(recover_edges(kept, removed, 0.5, n, g))
    assert _pairs(kept) <= half <= _pairs(data.edge_index)


@pytest.mark.parametrize(("k", "min_degree"), [(0, 1), (1, 1), (4, 1), (4, -1), (3, 3)])
def test_refine_graph_matches_brute_force(k: int, min_degree: int) -> None:
    """Kept edges: undirected, cosine > t1. Helpers: each node ``i`` gets edges ``j → i`` from
    its ``k`` most similar other nodes among those keeping more than ``min_degree``
    neighbours. Checked against a loop over all pairs."""
    torch.manual_seed(0)
    n, t1 = 50, 0.2
    z = torch.randn(n, 8, dtype=torch.float64)
    ei = random_attack(torch.empty(2, 0, dtype=torch.long), n, 120, "add")
    out = refine_graph(z, ei, t1=t1, k=k, min_degree=min_degree)
    pairs = [tuple(p) for p in out.T.tolist()]
    assert len(pairs) == len(set(pairs)) and all(i != j for i, j in pairs)
    zn = torch.nn.functional.normalize(z, dim=1)
    cos = (zn @ zn.T).tolist()
    kept = {(i, j) for i, j in _pairs(ei) if cos[i][j] > t1}
    deg = [sum(1 for a, _ in kept if a == i) for i in range(n)]
    expected = set(kept)
    for i in range(n):
        cand = sorted(
            (j for j in range(n) if j != i and deg[j] > min_degree), key=lambda j: -cos[i][j]
        )
        expected |= {(j, i) for j in cand[:k]}
    assert set(pairs) == expected
    in_helpers = [sum(1 for j, i in set(pairs) - kept if i == t) for t in range(n)]
    assert max(in_helpers) <= k


def test_advanced_norm_matches_dense_formula() -> None:
    data = _graph(40)
    n, alpha = data.num_nodes, -0.7
    ei, w = advanced_gcn_norm(data.edge_index, n, alpha, dtype=torch.float64)
    got = torch.zeros(n, n, dtype=torch.float64)
    got[ei[1], ei[0]] = w
    a = _dense(data.edge_index, n, torch.float64) + torch.eye(n, dtype=torch.float64)
    d = a.sum(1) ** alpha
    m = d[:, None] * a * d[None, :]
    ref = m / m.sum(1, keepdim=True)
    torch.testing.assert_close(got, ref)


def test_advanced_conv_permutation_equivariant_and_sparse_dense_agree() -> None:
    data = _graph(60)
    torch.manual_seed(0)
    conv = AdvancedGCNConv(data.num_features, 7, alpha=-0.3).double()
    x = data.x.double()
    out = conv(x, data.edge_index)
    perm = torch.randperm(data.num_nodes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out_p = conv(x[perm], inv[data.edge_index])
    torch.testing.assert_close(out_p, out[perm])
    adj_t = to_torch_coo_tensor(data.edge_index.flip(0), size=data.num_nodes)
    torch.testing.assert_close(conv(x, adj_t), out)


def test_advanced_conv_alpha_half_is_rownormalised_gcn() -> None:
    """With α = −1/2 the row-normalised matrix reduces to the random-walk ``D⁻¹(A+I)``
    (row normalisation cancels the left factor, leaving ``a_ij d_j^{-1/2}`` normalised)."""
    data = _graph(30)
    n = data.num_nodes
    ei, w = advanced_gcn_norm(data.edge_index, n, 0.0, dtype=torch.float64)
    got = torch.zeros(n, n, dtype=torch.float64)
    got[ei[1], ei[0]] = w
    a = _dense(data.edge_index, n, torch.float64) + torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(got, a / a.sum(1, keepdim=True))


@pytest.mark.parametrize("mode", ["add", "remove", "flip"])
def test_random_attack_changes_exactly_budget(mode: str) -> None:
    data = _graph()
    out = random_attack(data.edge_index, data.num_nodes, 15, mode, torch.Generator().manual_seed(1))
    before, after = (
        _pairs(_upper(data.edge_index, data.num_nodes)),
        _pairs(_upper(out, data.num_nodes)),
    )
    assert len(before ^ after) == 15
    if mode == "add":
        assert before <= after
    if mode == "remove":
        assert after <= before


def test_dice_removes_internal_adds_external() -> None:
    data = _graph()
    n, y = data.num_nodes, data.y
    out = dice_attack(data.edge_index, y, 20, 0.5, torch.Generator().manual_seed(0))
    before, after = _pairs(_upper(data.edge_index, n)), _pairs(_upper(out, n))
    removed, added = before - after, after - before
    assert len(removed) == 10 and len(added) == 10
    assert all(y[i] == y[j] for i, j in removed)
    assert all(y[i] != y[j] for i, j in added)


def _sgc_accuracy(x: torch.Tensor, ei: torch.Tensor, y: torch.Tensor, tr: torch.Tensor) -> float:
    """Accuracy on unlabelled nodes of a linearised GCN ``softmax(Â² X W)`` trained on ``ei``."""
    p = _dense_norm(_dense(ei, x.shape[0]))
    f = p @ (p @ x)
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(f[tr] @ w, y[tr]).backward()
        opt.step()
    return float(((f @ w).argmax(1) == y)[~tr].float().mean())


def test_pgd_attack_within_budget_and_beats_random() -> None:
    """PGD flips at most the budget; the meta-gradient (poisoning) variant hurts a linearised
    GCN trained on the poisoned graph more than the same number of random flips."""
    data = _graph(100)
    x, ei, y, tr = data.x, data.edge_index, data.y, data.train_mask
    n, budget = data.num_nodes, 40
    g = torch.Generator().manual_seed(0)
    before = _pairs(_upper(ei, n))
    evasion = pgd_attack(x, ei, y, tr, budget, steps=5, inner_steps=0, generator=g)
    assert 0 < len(before ^ _pairs(_upper(evasion, n))) <= budget
    meta = pgd_attack(x, ei, y, tr, budget, steps=20, inner_steps=20, generator=g)
    assert 0 < len(before ^ _pairs(_upper(meta, n))) <= budget
    rnd = random_attack(ei, n, budget, "flip", g)
    torch.manual_seed(0)
    clean, acc_rnd, acc_meta = (_sgc_accuracy(x, e, y, tr) for e in (ei, rnd, meta))
    assert acc_meta < acc_rnd - 0.03
    assert acc_meta < clean


def test_dense_norm_is_symmetric_gcn() -> None:
    a = _dense(_graph(40).edge_index, 40, torch.float64)
    p = _dense_norm(a)
    torch.testing.assert_close(p, p.T)
    assert torch.linalg.eigvalsh(p).max() == pytest.approx(1.0, abs=1e-9)


def test_stable_fit_predicts_and_refined_graph_is_clean() -> None:
    data = _graph(120)
    torch.manual_seed(0)
    model = STABLE(embed_dim=16, embed_epochs=5, epochs=10, k=2, t1=(0.0, 0.5)).fit(
        data.x,
        data.edge_index,
        data.y,
        data.train_mask,
        data.val_mask,
        generator=torch.Generator().manual_seed(0),
    )
    assert model.predict(data.x).shape == (data.num_nodes,)
    assert model.chosen["t1"] in (0.0, 0.5)
    r, z = model.refined, model.embeddings
    assert r is not None and z is not None and (r[0] != r[1]).all()
    # the classifier runs on the refined graph with the representations as features
    assert model.model is not None
    with torch.no_grad():
        torch.testing.assert_close(model.predict(), model.model(z, r).argmax(1))
    assert _pairs(r) == _pairs(refine_graph(z, data.edge_index, model.chosen["t1"], 2))


def test_encoder_matches_dense_heavy_self_loop_gcn() -> None:
    data = _graph(40)
    n = data.num_nodes
    torch.manual_seed(0)
    enc = STABLEEncoder(data.num_features, 6, self_loop=2.0).double()
    x = data.x.double()
    a = _dense(data.edge_index, n, torch.float64) + 2.0 * torch.eye(n, dtype=torch.float64)
    d = a.sum(1).pow(-0.5)
    p = d[:, None] * a * d[None, :]
    ref = enc.act(p @ enc.conv.lin(x) + enc.conv.bias)
    torch.testing.assert_close(enc(x, data.edge_index), ref)


def test_contrastive_loss_matches_dense_dgi_reference() -> None:
    # the authors' DGI: critic scores of both views added, one BCE; views at self-loop β + 1
    data = _graph(40)
    n = data.num_nodes
    enc = STABLEEncoder(data.num_features, 5, self_loop=2.0).double()
    x = data.x.double()
    kept, removed = jaccard_prune(data.x, data.edge_index, 0.1)
    v1 = recover_edges(kept, removed, 0.5, n, torch.Generator().manual_seed(1))
    v2 = recover_edges(kept, removed, 0.5, n, torch.Generator().manual_seed(2))
    loss = enc.loss(x, kept, v1, v2, torch.Generator().manual_seed(3))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))

    def embed(feats: torch.Tensor, ei: torch.Tensor, beta: float) -> torch.Tensor:
        a = _dense(ei, n, torch.float64) + beta * torch.eye(n, dtype=torch.float64)
        d = a.sum(1).pow(-0.5)
        return enc.act((d[:, None] * a * d[None, :]) @ enc.conv.lin(feats) + enc.conv.bias)

    h, neg = embed(x, kept, 2.0), embed(x[perm], kept, 2.0)
    pos_score = torch.zeros(n, dtype=torch.float64)
    neg_score = torch.zeros(n, dtype=torch.float64)
    for v in (v1, v2):
        s = torch.sigmoid(embed(x, v, 3.0).mean(0))
        pos_score = pos_score + h @ enc.critic_weight @ s + enc.critic_bias
        neg_score = neg_score + neg @ enc.critic_weight @ s + enc.critic_bias
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.cat([pos_score, neg_score]), torch.cat([torch.ones(n), torch.zeros(n)]).double()
    )
    torch.testing.assert_close(loss, ref)


def test_bad_inputs() -> None:
    data = _graph(30)
    bad = data.edge_index.clone()
    bad[0, 0] = 99
    with pytest.raises(ValueError, match="outside"):
        jaccard_prune(data.x, bad)
    with pytest.raises(TypeError, match="integer class labels"):
        dice_attack(data.edge_index, data.y.float(), 3)
    with pytest.raises(ValueError, match="mode"):
        random_attack(data.edge_index, 30, 3, "swap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        refine_graph(torch.randn(30, 4), data.edge_index, k=30)
    with pytest.raises(ValueError, match="val_mask"):
        STABLE(t1=(0.1, 0.2)).fit(data.x, data.edge_index, data.y, data.train_mask)
