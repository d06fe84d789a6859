"""Genotype derivation, JSON round trip, discrete network == restricted supernet, plot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from torchloom.nas.genotype import (
    Genotype,
    build_from_supernet,
    derive_cell,
    derive_genotype,
)
from torchloom.nas.space import PRIMITIVES, cell_edges
from torchloom.nas.supernet import Supernet

OPS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")


@st.composite
def genotypes(draw: st.DrawFn) -> Genotype:
    steps = draw(st.integers(1, 5))

    def cell() -> list[list[tuple[str, int]]]:
        nodes = []
        for i in range(steps):
            k = draw(st.integers(1, i + 2))
            inputs = draw(st.permutations(range(i + 2)))[:k]
            nodes.append([(draw(st.sampled_from(PRIMITIVES)), j) for j in inputs])
        return nodes

    concat = list(range(2, 2 + steps))
    return Genotype(cell(), concat, cell(), concat)  # type: ignore[arg-type]


@given(genotypes())
def test_json_round_trip(g: Genotype) -> None:
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_dict(g.to_dict()) == g


def test_json_file_round_trip(tmp_path: Path) -> None:
    g = Genotype([[("sep_conv_3x3", 0), ("skip_connect", 1)]], [2], [[("max_pool_3x3", 1)]], [2])
    g.to_json(tmp_path / "g.json")
    assert Genotype.from_json(tmp_path / "g.json") == g


def supernet() -> Supernet:
    g = torch.Generator().manual_seed(0)
    return Supernet(C=4, layers=3, steps=3, ops=OPS, alpha_init_std=1.0, generator=g).double()


@pytest.mark.parametrize("train", [False, True])
def test_discrete_network_equals_restricted_supernet(train: bool) -> None:
    m = supernet()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    m.train()
    m(x)  # move BatchNorm running stats away from their init
    m.train(train)
    g = derive_genotype(m)
    net = build_from_supernet(g, m)
    restricted = m(x, weights=g.supernet_weights(m.op_names))
    torch.testing.assert_close(net(x), restricted)
    # a different genotype gives a different restricted output: the check can fail
    other = Genotype.from_dict({**g.to_dict(), "normal": [[["skip_connect", 0]]] * 3})
    other_out = m(x, weights=other.supernet_weights(m.op_names))
    assert not torch.allclose(other_out, restricted)


def test_genotype_build_for_retraining() -> None:
    m = supernet()
    g = derive_genotype(m)
    net = g.build(C=4, layers=3)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    bns = [mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and all(bn.affine for bn in bns)
    # the discrete network has fewer parameters than the supernet it came from
    n_net = sum(p.numel() for p in net.parameters())
    assert n_net < sum(p.numel() for p in m.weight_parameters())


def test_derive_cell_picks_planted_ops() -> None:
    steps, names = 3, list(OPS)
    edges = cell_edges(steps)
    w = torch.full((len(edges), len(names)), 0.01)
    w[:, 0] = 0.9  # 'none' dominates everywhere and must never be chosen
    plan = {
        (0, 0): "sep_conv_3x3",
        (0, 1): "skip_connect",
        (1, 2): "dil_conv_3x3",
        (1, 0): "avg_pool_3x3",
        (2, 3): "max_pool_3x3",
        (2, 1): "sep_conv_3x3",
    }
    for (i, j), op in plan.items():
        w[edges.index((i, j)), names.index(op)] = 0.5
    w[edges.index((2, 0)), names.index("skip_connect")] = 0.3  # third best on node 2: dropped
    cell = derive_cell(w, names, steps)
    assert cell == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("avg_pool_3x3", 0), ("dil_conv_3x3", 2)),
        (("sep_conv_3x3", 1), ("max_pool_3x3", 3)),
    )


def test_derive_genotype_never_picks_none_and_keeps_two_distinct_inputs() -> None:
    g = derive_genotype(supernet())
    for nodes in (g.normal, g.reduce):
        for i, node in enumerate(nodes):
            assert len(node) == 2 and len({j for _, j in node}) == 2
            assert all(op != "none" and 0 <= j < i + 2 for op, j in node)


def test_bad_genotypes() -> None:
    with pytest.raises(ValueError, match="unknown op"):
        Genotype([[("conv_99", 0)]], [2], [[("skip_connect", 0)]], [2])
    with pytest.raises(ValueError, match="input must be a state index"):
        Genotype([[("skip_connect", 2)]], [2], [[("skip_connect", 0)]], [2])
    with pytest.raises(ValueError, match="same number of nodes"):
        Genotype([[("skip_connect", 0)]], [2], [[("skip_connect", 0)]] * 2, [2])
    with pytest.raises(ValueError, match="missing genotype keys"):
        Genotype.from_dict({"normal": []})
    g = derive_genotype(supernet())
    with pytest.raises(ValueError, match="nodes"):
        build_from_supernet(g, Supernet(C=4, steps=2, ops=OPS))


def test_plot_draws_every_edge() -> None:
    g = derive_genotype(supernet())
    fig = g.plot("reduce")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for node in g.reduce:
        for op, _ in node:
            assert op in texts
    assert texts.count("c_{k}") == 1
