"""sharpDARTS: Cosine Power Annealing golden values, SharpDARTS schedule, HyperCuboid read-out."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torchloom.nas.sharpdarts import (
    SHARP_PRIMITIVES,
    HyperCuboid,
    SharpDARTS,
    cosine_power_annealing,
)
from torchloom.nas.space import make_op
from torchloom.nas.supernet import Supernet


@pytest.mark.parametrize("power", [1.0, 2.0, 10.0])
def test_cpa_first_is_max_last_is_min(power: float) -> None:
    lrs = cosine_power_annealing(12, max_lr=0.1, min_lr=1e-3, power=power)
    assert len(lrs) == 12
    assert lrs[0] == pytest.approx(0.1, abs=1e-15) and lrs[-1] == pytest.approx(1e-3, abs=1e-15)
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_cpa_power_one_is_normalised_cosine_and_formula() -> None:
    E, hi, lo = 9, 0.2, 0.01
    c = [(1 + math.cos(math.pi * e / E)) / 2 for e in range(1, E + 1)]
    cos_ref = [lo + (x - min(c)) / (max(c) - min(c)) * (hi - lo) for x in c]
    assert cosine_power_annealing(E, hi, lo, power=1.0) == pytest.approx(cos_ref, rel=1e-12)
    p = 10.0
    v = [p ** (x + 1) for x in c]
    ref = [lo + (x - min(v)) / (max(v) - min(v)) * (hi - lo) for x in v]
    got = cosine_power_annealing(E, hi, lo, power=p)
    assert got == pytest.approx(ref, rel=1e-12)
    # a larger power spends less time at high rates: below cosine at every interior epoch
    assert all(a < b for a, b in zip(got[1:-1], cos_ref[1:-1]))


def test_cpa_warmup() -> None:
    lrs = cosine_power_annealing(10, 0.1, 0.0, power=10, warmup_epochs=3, warmup_lr=0.01)
    assert lrs[:3] == pytest.approx([0.01, 0.04, 0.07])
    assert lrs[3] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="warmup_epochs must be < epochs"):
        cosine_power_annealing(3, warmup_epochs=3)
    with pytest.raises(ValueError, match="power must be >= 1"):
        cosine_power_annealing(3, power=0.5)


def test_sharpdarts_strategy_uses_cpa() -> None:
    s = SharpDARTS(power=10.0, w_lr=0.05, w_lr_min=0.001)
    m = Supernet(C=2, layers=2, steps=1, ops=("none", "skip_connect"))
    s.setup(m, 6)
    sched = cosine_power_annealing(6, 0.05, 0.001, 10.0)
    for e in range(6):
        s.on_epoch_start(m, e)
        assert s.current_lr == pytest.approx(sched[e])


def test_sharp_space_ops() -> None:
    x = torch.randn(2, 4, 8, 8)
    for name in SHARP_PRIMITIVES:
        assert make_op(name, 4, 2)(x).shape == (2, 4, 4, 4)
    flood = make_op("flood_conv_3x3", 4)
    assert flood[2].out_channels == 16  # 1x1 to C * 4


def test_hypercuboid_best_path_matches_enumeration() -> None:
    torch.manual_seed(0)
    net = HyperCuboid(layers=3, channels=(4, 6, 8), max_reductions=2)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    best = net.best_path()
    brute = max(
        (net.path_log_weight(s, ch, stem), s, ch)
        for s in itertools.product((1, 2), repeat=3)
        if sum(x == 2 for x in s) <= 2
        for ch in itertools.product(net.channels, repeat=3)
        for stem in range(3)
    )
    assert best.log_weight == pytest.approx(brute[0])
    assert (best.strides, best.channels) == (brute[1], brute[2])


def test_hypercuboid_forward_and_gradients() -> None:
    net = HyperCuboid(layers=2, channels=(4, 8), max_reductions=1)
    out = net(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10)
    out.logsumexp(-1).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())
    arch = {id(p) for p in net.arch_parameters()}
    assert all(id(p) not in arch for p in net.weight_parameters())
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 7, 7))
