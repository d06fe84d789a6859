"""Modular-arithmetic data, Fourier IPR, the analytic solution and neuron pruning."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.theory.grokking import (
    ModularMLP,
    analytic_modular_mlp,
    fourier_ipr,
    fourier_power,
    ipr,
    modular_accuracy,
    modular_arithmetic,
    neuron_ipr,
    one_hot_pairs,
    prune_neurons,
    train_modular,
)

F64 = torch.float64


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_labels_and_corruption(op: str) -> None:
    p = 13
    g = torch.Generator().manual_seed(0)
    d = modular_arithmetic(p, op, train_fraction=0.5, corrupt_fraction=0.3, generator=g)  # type: ignore[arg-type]
    ref = {
        "+": lambda a, b: (a + b) % p,
        "-": lambda a, b: (a - b) % p,
        "*": lambda a, b: (a * b) % p,
        "/": lambda a, b: next(c for c in range(p) if (c * b) % p == a),
    }[op]
    for pairs, labels in ((d.train_pairs, d.train_true), (d.test_pairs, d.test_labels)):
        for (a, b), y in zip(pairs.tolist(), labels.tolist()):
            assert y == ref(a, b)
    # The split is a partition of all valid pairs.
    allp = torch.cat([d.train_pairs, d.test_pairs])
    n_valid = p * p - (p if op == "/" else 0)
    assert len({tuple(x) for x in allp.tolist()}) == allp.shape[0] == n_valid
    # Exactly round(xi N) labels corrupted, each to a different class; the rest untouched.
    n = d.train_pairs.shape[0]
    assert int(d.corrupted.sum()) == round(0.3 * n)
    assert bool((d.train_labels[d.corrupted] != d.train_true[d.corrupted]).all())
    assert bool((d.train_labels[~d.corrupted] == d.train_true[~d.corrupted]).all())


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="prime"):
        modular_arithmetic(12, "/")
    with pytest.raises(ValueError, match="operation"):
        modular_arithmetic(7, "^")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_fraction"):
        modular_arithmetic(7, train_fraction=1.0)
    with pytest.raises(ValueError, match="pairs"):
        one_hot_pairs(torch.tensor([[0, 7]]), 7)
    with pytest.raises(ValueError, match="r must"):
        ipr(torch.ones(3), r=1.0)
    net = ModularMLP(7, 4)
    with pytest.raises(ValueError, match="keep"):
        prune_neurons(net, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="x must"):
        net(torch.randn(2, 13))


def test_ipr_extremes_and_scale_invariance() -> None:
    n = 9
    assert float(ipr(torch.eye(n, dtype=F64)[3])) == pytest.approx(1.0)
    assert float(ipr(torch.ones(n, dtype=F64))) == pytest.approx(1 / n)
    v = torch.randn(5, n, dtype=F64)
    torch.testing.assert_close(ipr(3.7 * v), ipr(v))
    # 1/n <= IPR <= 1 for r = 2.
    val = ipr(v)
    assert bool(((val >= 1 / n - 1e-12) & (val <= 1 + 1e-12)).all())


@pytest.mark.parametrize("p", [11, 12])
def test_fourier_power_parseval_and_pure_cosine(p: int) -> None:
    w = torch.randn(4, p, dtype=F64)
    torch.testing.assert_close(fourier_power(w).sum(-1), p * (w * w).sum(-1))
    m = torch.arange(p, dtype=F64)
    for k in range(1, (p - 1) // 2 + 1):
        cos = torch.cos(2 * math.pi * k * m / p + 0.7)
        assert float(fourier_ipr(cos)) == pytest.approx(1.0)
    # A delta has a flat spectrum: power 1 at k=0 and 2 at each merged pair (p odd).
    if p % 2:
        delta = torch.zeros(p, dtype=F64)
        delta[2] = 1.0
        expected = (1 + 4 * (p - 1) / 2) / p**2
        assert float(fourier_ipr(delta)) == pytest.approx(expected)


def test_analytic_solution_generalises_with_periodic_neurons() -> None:
    p = 23
    g = torch.Generator().manual_seed(0)
    net = analytic_modular_mlp(p, 600, generator=g)
    d = modular_arithmetic(p, "+", train_fraction=0.5, generator=g)
    acc = modular_accuracy(net, d)
    assert acc.train_clean == 1.0 and acc.test == 1.0
    torch.testing.assert_close(net.neuron_ipr(), torch.ones(600, dtype=F64))
    # The same net does not solve subtraction.
    d_minus = modular_arithmetic(p, "-", train_fraction=0.5, generator=g)
    assert modular_accuracy(net, d_minus).test < 0.5


def test_neuron_ipr_blocks() -> None:
    u = torch.randn(6, 14, dtype=F64)
    w = torch.randn(7, 6, dtype=F64)
    expected = (fourier_ipr(u[:, :7]) + fourier_ipr(u[:, 7:]) + fourier_ipr(w.T)) / 3
    torch.testing.assert_close(neuron_ipr(u, w), expected)
    with pytest.raises(ValueError, match="input_weight"):
        neuron_ipr(u, torch.randn(6, 6, dtype=F64))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_pruning_equals_smaller_network(batchnorm: bool) -> None:
    g = torch.Generator().manual_seed(1)
    p, n = 7, 10
    net = ModularMLP(p, n, batchnorm=batchnorm, generator=g, dtype=F64).eval()
    keep = torch.rand(n, generator=g) > 0.5
    pruned = prune_neurons(net, keep)
    small = ModularMLP(p, int(keep.sum()), batchnorm=batchnorm, dtype=F64).eval()
    with torch.no_grad():
        small.embed.weight.copy_(net.embed.weight[keep])
        small.readout.weight.copy_(net.readout.weight[:, keep])
        if batchnorm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(small.norm, name).copy_(getattr(net.norm, name)[keep])
    x = torch.randint(0, p, (9, 2), generator=g)
    torch.testing.assert_close(pruned(x), small(x))
    torch.testing.assert_close(prune_neurons(net, torch.ones(n, dtype=torch.bool))(x), net(x))
    assert not torch.equal(pruned.embed.weight, net.embed.weight)  # original untouched copy


def test_training_memorises_corrupted_labels() -> None:
    g = torch.Generator().manual_seed(0)
    d = modular_arithmetic(11, "+", train_fraction=0.6, corrupt_fraction=0.2, generator=g)
    net = ModularMLP(11, 64, generator=g)
    hist = train_modular(net, d, steps=150, record_every=50)
    assert [r["step"] for r in hist.rows] == [0.0, 50.0, 100.0, 150.0]
    last = hist.rows[-1]
    acc = modular_accuracy(net, d)
    assert last["train_corrupted"] == acc.train_corrupted
    # Unregularised, the net fits every training label, corrupted ones included.
    assert acc.train_clean == 1.0 and acc.train_corrupted == 1.0
    assert len(hist.ipr) == 4 and hist.ipr[-1].shape == (64,)
