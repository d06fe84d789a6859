"""Latency lookup tables: measurement, JSON round-trip, expected latency and its gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from torchloom.nas.blocks import ChainSupernet
from torchloom.nas.latency import (
    LatencyTable,
    arch_latency_matrices,
    expected_latency,
    measure_latency_table,
    search_edges,
)


def _table() -> LatencyTable:
    return LatencyTable(
        {"a": {"x": 10.0, "y": 30.0, "z": 2.0}, "b": {"x": 5.0, "y": 1.0, "z": 7.0}},
        {"a": (2, 3), "b": (2, 3)},
    )


def test_heavy_op_measures_slower_than_identity() -> None:
    ops = {
        "conv": nn.Sequential(*[nn.Conv2d(32, 32, 3, padding=1) for _ in range(4)]),
        "skip": nn.Identity(),
    }
    t = measure_latency_table(ops, (8, 32, 16, 16), repeats=5, warmup=1, edge="e")
    assert t.edges == ["e"] and set(t.entries["e"]) == {"conv", "skip"}
    assert all(v > 0 for v in t.entries["e"].values())
    # four 32-channel 3x3 convolutions on 8x16x16 are >1e7 FLOPs; identity is a function call
    assert t.lookup("e", "conv") > 10 * t.lookup("e", "skip")
    assert t.input_shapes["e"] == (8, 32, 16, 16)


def test_supernet_table_has_every_edge_and_op() -> None:
    net = ChainSupernet(stages=((4, 2, 1), (8, 1, 2)), ops=("mb_k3_e3", "zero"))
    t = measure_latency_table(net, (2, 1, 8, 8), repeats=1, warmup=0)
    assert t.edges == net.edge_names() == list(search_edges(net))
    for e in t.edges:
        assert set(t.entries[e]) == {"mb_k3_e3", "zero"}
    # the second stage runs at stride 2 with 8 channels: input shapes were recorded per edge
    assert t.input_shapes["body.layers.0"] == (2, 4, 8, 8)
    assert t.input_shapes["body.layers.2"] == (2, 8, 4, 4)
    m = arch_latency_matrices(net, t)["layers"]
    assert m.shape == (3, 2) and bool((m > 0).all())


def test_json_round_trip(tmp_path: Path) -> None:
    t = _table()
    back = LatencyTable.load(t.save(tmp_path / "lat.json"))
    assert back.entries == t.entries and back.input_shapes == t.input_shapes
    assert back.device == t.device


def test_expected_latency_is_weighted_sum_with_table_gradient() -> None:
    t = _table()
    w = torch.rand(2, 3, dtype=torch.float64).softmax(-1).requires_grad_(True)
    e = t.expected(w, ["a", "b"], ["x", "y", "z"])
    manual = sum(
        float(w[i, j].detach()) * t.entries[edge][op]
        for i, edge in enumerate("ab")
        for j, op in enumerate("xyz")
    )
    assert float(e.detach()) == pytest.approx(manual, rel=1e-12)
    (g,) = torch.autograd.grad(e, w)
    assert torch.equal(g, t.matrix(["a", "b"], ["x", "y", "z"], dtype=torch.float64))
    one_hot = torch.zeros(2, 3, dtype=torch.float64)
    one_hot[0, 1] = one_hot[1, 2] = 1.0
    assert float(t.expected(one_hot, ["a", "b"], ["x", "y", "z"])) == t.total({"a": "y", "b": "z"})


def test_missing_op_and_edge_are_clear_errors() -> None:
    t = _table()
    with pytest.raises(ValueError, match="lacks op 'w' on edge 'a'"):
        t.vector("a", ["x", "w"])
    with pytest.raises(ValueError, match="no edge 'c'"):
        t.lookup("c", "x")
    net = ChainSupernet(stages=((4, 1, 1),), ops=("mb_k3_e3", "mb_k5_e3"))
    with pytest.raises(ValueError, match="lacks op"):
        arch_latency_matrices(net, LatencyTable({"body.layers.0": {"mb_k3_e3": 1.0}}))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        LatencyTable({"a": {"x": -1.0}})
    with pytest.raises(ValueError, match="same shape"):
        expected_latency(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency_table({"s": nn.Identity()}, (0, 3))
    with pytest.raises(ValueError, match="no search edges"):
        measure_latency_table(nn.Linear(3, 3), (1, 3))
    with pytest.raises(ValueError, match="empty"):
        measure_latency_table({}, (1, 3))


def test_table_is_reproducible_and_keeps_the_cost_order() -> None:
    torch.manual_seed(0)

    def stack(depth: int) -> nn.Module:
        return nn.Sequential(*[nn.Conv2d(16, 16, 3, padding=1) for _ in range(depth)])

    ops = {"d1": stack(1), "d3": stack(3), "d9": stack(9), "skip": nn.Identity()}
    a = measure_latency_table(ops, (1, 16, 32, 32), repeats=5, warmup=1, edge="e")
    b = measure_latency_table(ops, (1, 16, 32, 32), repeats=5, warmup=1, edge="e")
    for t in (a, b):
        row = t.entries["e"]
        assert row["skip"] < row["d1"] < row["d3"] < row["d9"]
    for op in ("d1", "d3", "d9"):
        assert a.lookup("e", op) / b.lookup("e", op) == pytest.approx(1.0, abs=0.35)


def test_measurement_is_single_threaded_and_restores_the_thread_count() -> None:
    seen: list[int] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measure_latency_table({"p": Probe()}, (1, 3), repeats=2, warmup=1)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        seen.clear()
        measure_latency_table({"p": Probe()}, (1, 3), repeats=1, warmup=0, threads=None)
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)


def test_bad_measurement_options() -> None:
    with pytest.raises(ValueError, match="statistic"):
        measure_latency_table({"s": nn.Identity()}, (1, 3), statistic="mean")
    with pytest.raises(ValueError, match="clock"):
        measure_latency_table({"s": nn.Identity()}, (1, 3), clock="gpu")
    # the CPU clock times the calling thread: refused when ops may run on several threads
    with pytest.raises(ValueError, match="one intra-op thread"):
        measure_latency_table({"s": nn.Identity()}, (1, 3), threads=2, clock="cpu")
