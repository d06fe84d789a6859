"""DARTS-PT: projection masks, perturbation scores, the selected genotype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchloom.nas.selection import Projection, perturbation_selection, supernet_score
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "avg_pool_3x3", "conv_1x1")


def net() -> Supernet:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return Supernet(
        C=2, layers=2, steps=2, ops=OPS, reductions=(1,), alpha_init_std=1.0, generator=g
    )


def data(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
        for _ in range(n)
    ]


def test_projection_weights() -> None:
    m = net()
    p = Projection(m)
    soft = {k: a.softmax(-1) for k, a in m.alphas().items()}
    w = p.weights()
    torch.testing.assert_close(w["normal"], soft["normal"])
    p.chosen["normal"][3] = 2
    p.kept["reduce"][1] = False
    w = p.weights(drop_op=("normal", 0, 1))
    assert torch.equal(w["normal"][3], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(w["reduce"][1], torch.zeros(4))
    assert w["normal"][0, 1] == 0 and torch.equal(w["normal"][0, 2:], soft["normal"][0, 2:])
    w = p.weights(drop_edge=("reduce", 4))
    assert torch.equal(w["reduce"][4], torch.zeros(4))
    assert len(p.undecided()) == 2 * m.num_edges - 1
    with pytest.raises(RuntimeError, match="undecided"):
        p.genotype()


def test_selection_picks_most_harmful_removal_and_valid_genotype() -> None:
    m = net()
    val = data(2, 1)
    # the first decision (a random normal-cell edge), scored independently of Projection
    g = torch.Generator().manual_seed(3)
    kind = "normal"
    e = int(torch.randint(m.num_edges, (1,), generator=torch.Generator().manual_seed(3)))
    accs = {}
    for o in range(1, len(OPS)):
        w = {k: a.softmax(-1).detach().clone() for k, a in m.alphas().items()}
        w[kind][e, o] = 0.0
        accs[o] = supernet_score(m, val, w, batch_stats=True)
    genotype, record = perturbation_selection(m, val, train=None, generator=g)
    k0, e0, op0, scores0 = record.ops[0]
    assert (k0, e0) == (kind, e)
    worst = min(accs, key=lambda o: (accs[o][0], -accs[o][1]))
    assert op0 == OPS[worst]
    assert scores0 == {OPS[o]: a[0] for o, a in accs.items()}
    assert len(record.ops) == 2 * m.num_edges
    # rounds project one normal and one reduction edge each
    assert [r[0] for r in record.ops] == ["normal", "reduce"] * m.num_edges
    for nodes in (genotype.normal, genotype.reduce):
        for i, node in enumerate(nodes):
            assert len(node) == 2 and all(op != "none" and j < i + 2 for op, j in node)


def test_topology_keeps_edges_whose_removal_hurts_most() -> None:
    m = net()
    _, record = perturbation_selection(
        m, data(2, 1), train=data(2, 2), tune_steps=1, generator=torch.Generator().manual_seed(0)
    )
    for _, _, kept, accs in record.edges:
        dropped = [j for j in accs if j not in kept]
        assert all(accs[k] <= accs[d] for k in kept for d in dropped)


def test_fine_tuning_changes_weights_only() -> None:
    m = net()
    alphas = [a.clone() for a in m.arch_parameters()]
    w0 = [p.clone() for p in m.weight_parameters()]
    perturbation_selection(m, data(1, 1), train=data(1, 2), tune_steps=1)
    assert all(torch.equal(a, b) for a, b in zip(alphas, m.arch_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(w0, m.weight_parameters()))


def test_arch_steps_during_fine_tuning_move_alpha() -> None:
    m = net()
    alphas = [a.clone() for a in m.arch_parameters()]
    perturbation_selection(m, data(1, 1), train=data(1, 2), tune_steps=1, arch_lr=0.1)
    assert any(not torch.equal(a, b) for a, b in zip(alphas, m.arch_parameters()))


def test_batch_statistics_scoring_has_no_side_effects() -> None:
    m = net()
    val = data(2, 1)
    w = {k: a.softmax(-1).detach() for k, a in m.alphas().items()}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.eval()
    acc_b, loss_b = supernet_score(m, val, w, batch_stats=True)
    assert not m.training
    for key, v in m.state_dict().items():
        assert torch.equal(v, before[key]), key
    # equals a train-mode forward by hand (batch statistics)
    m.train()
    with torch.no_grad():
        logits = [m(x, weights=w) for x, _ in val]
    m.load_state_dict(before)
    correct = sum(int((z.argmax(-1) == y).sum()) for z, (_, y) in zip(logits, val))
    assert acc_b == correct / sum(len(y) for _, y in val)
    losses = [float(F.cross_entropy(z, y, reduction="sum")) for z, (_, y) in zip(logits, val)]
    assert loss_b == pytest.approx(sum(losses) / sum(len(y) for _, y in val))


def test_selection_bad_inputs() -> None:
    with pytest.raises(TypeError, match="Supernet"):
        perturbation_selection(torch.nn.Linear(2, 2), data(1, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val must hold"):
        perturbation_selection(net(), [])
