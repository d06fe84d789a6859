"""ProxylessNAS: the binary-path estimator against the softmax-relaxed gradient, memory, loss."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.memory import SavedTensorMeter
from torchloom.nas.blocks import ChainSupernet, search_chain
from torchloom.nas.latency import LatencyTable
from torchloom.nas.proxyless import (
    ProxylessMixing,
    ProxylessNAS,
    latency_loss,
    mix_ops,
    rescale_two_path_,
)
from torchloom.nas.search import search
from torchloom.nas.supernet import Supernet

D = 6


def _edge(n: int) -> tuple[list[nn.Module], torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ops: list[nn.Module] = [nn.Linear(D, D).double() for _ in range(n)]
    x = torch.randn(4, D, dtype=torch.float64)
    y = torch.randn(4, D, dtype=torch.float64)
    alpha = torch.tensor([0.3, -0.5, 1.0, 0.1, -0.2][:n], dtype=torch.float64)
    return ops, x, y, alpha


def _quadratic(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum()


def _relaxed_grad(
    ops: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: torch.Tensor,
    subset: list[int] | None = None,
) -> torch.Tensor:
    """DARTS gradient of L(Σ_j softmax(α)_j o_j) (over ``subset`` only, zero elsewhere)."""
    idx = list(range(len(ops))) if subset is None else subset
    a = alpha.clone().requires_grad_(True)
    p = a[idx].softmax(-1)
    out = sum(p[k] * ops[j](x) for k, j in enumerate(idx))
    (g,) = torch.autograd.grad(_quadratic(out, y), a)
    return g


def _proxyless_sample(
    ops: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: torch.Tensor,
    mixing: ProxylessMixing,
) -> tuple[torch.Tensor, int, tuple[int, ...]]:
    a = alpha.clone().requires_grad_(True)
    mix = mixing(a[None])
    lazy = None if mix.lazy is None else mix.lazy[0]
    act = None if mix.active is None else mix.active[0]
    out = mix_ops(ops, x, mix.weights[0], act, lazy)
    (g,) = torch.autograd.grad(_quadratic(out, y), a)
    chosen = int(mix.weights[0].argmax())
    pair = () if mix.pair is None else tuple(sorted(mix.pair[0].tolist()))
    return g, chosen, pair


def test_one_path_estimator_is_unbiased_for_relaxed_gradient() -> None:
    ops, x, y, alpha = _edge(4)
    mixing = ProxylessMixing("one", generator=torch.Generator().manual_seed(0))
    n = 1200
    grads, counts, per_choice = [], torch.zeros(4), {}
    for _ in range(n):
        g, c, _ = _proxyless_sample(ops, x, y, alpha, mixing)
        grads.append(g)
        counts[c] += 1
        per_choice[c] = g
    truth = _relaxed_grad(ops, x, y, alpha)
    p = alpha.softmax(-1)
    # exact expectation: the estimator is a deterministic function of the sampled path
    assert len(per_choice) == 4
    exact = sum(p[c] * per_choice[c] for c in range(4))
    assert torch.allclose(exact, truth, atol=1e-10)
    # statistical: the Monte-Carlo mean lies within 5 standard errors of the relaxed gradient
    g = torch.stack(grads)
    se = g.std(0) / math.sqrt(n)
    assert bool(((g.mean(0) - truth).abs() <= 5 * se + 1e-9).all())
    # the sampler draws path j with probability p_j (binomial 5-sigma band)
    freq = counts / n
    assert bool(((freq - p.float()).abs() <= 5 * (p.float() * (1 - p.float()) / n).sqrt()).all())


def test_estimator_without_lazy_paths_is_biased() -> None:
    """The check above can fail: dropping ∂L/∂g_j of the inactive paths breaks unbiasedness."""
    ops, x, y, alpha = _edge(4)
    p = alpha.softmax(-1)
    exact = torch.zeros(4, dtype=torch.float64)
    for c in range(4):
        a = alpha.clone().requires_grad_(True)
        q = a.softmax(-1)
        gates = F.one_hot(torch.tensor(c), 4).double() + (q - q.detach())
        out = mix_ops(ops, x, gates, torch.tensor([c]), None)
        (g,) = torch.autograd.grad(_quadratic(out, y), a)
        exact += p[c] * g
    assert not torch.allclose(exact, _relaxed_grad(ops, x, y, alpha), atol=1e-3)


def test_two_path_estimator_is_unbiased_given_the_pair() -> None:
    ops, x, y, alpha = _edge(3)
    mixing = ProxylessMixing("two", generator=torch.Generator().manual_seed(1))
    n = 900
    by_pair: dict[tuple[int, ...], list[torch.Tensor]] = defaultdict(list)
    choice: dict[tuple[int, ...], dict[int, torch.Tensor]] = defaultdict(dict)
    chosen_count: dict[tuple[int, ...], torch.Tensor] = defaultdict(lambda: torch.zeros(3))
    for _ in range(n):
        g, c, pair = _proxyless_sample(ops, x, y, alpha, mixing)
        by_pair[pair].append(g)
        choice[pair][c] = g
        chosen_count[pair][c] += 1
    p = alpha.softmax(-1)
    assert set(by_pair) == {(0, 1), (0, 2), (1, 2)}
    for pair, gs in by_pair.items():
        a, b = pair
        truth = _relaxed_grad(ops, x, y, alpha, list(pair))
        q = alpha[list(pair)].softmax(-1)
        exact = q[0] * choice[pair][a] + q[1] * choice[pair][b]
        assert torch.allclose(exact, truth, atol=1e-10)
        other = ({0, 1, 2} - set(pair)).pop()
        assert all(float(g[other]) == 0.0 for g in gs)
        g = torch.stack(gs)
        se = g.std(0) / math.sqrt(len(gs))
        assert bool(((g.mean(0) - truth).abs() <= 5 * se + 1e-9).all())
        # the pair is drawn without replacement from p: P{a,b} = p_a p_b (1/(1-p_a) + 1/(1-p_b))
        pab = float(p[a] * p[b] * (1 / (1 - p[a]) + 1 / (1 - p[b])))
        assert abs(len(gs) / n - pab) <= 5 * math.sqrt(pab * (1 - pab) / n)


@pytest.mark.parametrize("mode", ["one", "two"])
def test_lazy_recomputation_gives_the_same_gradient(mode: str) -> None:
    torch.manual_seed(0)
    base = ChainSupernet(stages=((4, 2, 1),))
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    grads, stats = [], []
    for lazy in (True, False):
        net = ChainSupernet(stages=((4, 2, 1),))
        net.load_state_dict(base.state_dict())
        net.mixing = ProxylessMixing(mode, lazy, torch.Generator().manual_seed(5))  # type: ignore[arg-type]
        mix = net.mixing(net.alpha)
        loss = F.cross_entropy(net(x, mix), y)
        (g,) = torch.autograd.grad(loss, net.alpha)
        grads.append(g)
        if lazy:
            active = {int(i) for i in mix.active[0].tolist()}
            lazy_ops = [int(j) for j in mix.lazy[0].tolist()]
            assert not active & set(lazy_ops)
            # lazy recomputation leaves BatchNorm statistics of lazy ops untouched
            bn = [
                m
                for m in net.body.layers[0].ops[lazy_ops[0]].modules()
                if isinstance(m, nn.BatchNorm2d)
            ]
            stats.append(all(float(b.running_mean.abs().sum()) == 0.0 for b in bn))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert stats == [True]


def _saved_bytes(ops: tuple[str, ...], mixing: object, seed: int) -> int:
    torch.manual_seed(seed)
    net = ChainSupernet(stem_channels=4, stages=((4, 3, 1),), ops=ops)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with SavedTensorMeter(exclude=[*net.parameters(), x]) as meter:
        loss = F.cross_entropy(net(x, mixing(net.alpha)), y)  # type: ignore[operator]
        loss.backward()
    return meter.peak_bytes


def test_memory_flat_in_number_of_candidates() -> None:
    few = ("mb_k3_e6", "mb_k5_e6")
    many = ("mb_k3_e6", "mb_k5_e6", "mb_k7_e6", "mb_k9_e6", "mb_k11_e6", "mb_k13_e6")
    prox = [
        _saved_bytes(o, ProxylessMixing("one", generator=torch.Generator().manual_seed(0)), 0)
        for o in (few, many)
    ]
    two = [
        _saved_bytes(o, ProxylessMixing("two", generator=torch.Generator().manual_seed(0)), 0)
        for o in (few, many)
    ]
    soft = [_saved_bytes(o, lambda a: a.softmax(-1), 0) for o in (few, many)]
    assert prox[1] / prox[0] <= 1.05
    assert two[1] / two[0] <= 1.05
    assert soft[1] / soft[0] >= 2.5  # 3x more candidates, each storing its own activations
    assert prox[1] * 4 < soft[1]


def test_rescale_two_path_keeps_unsampled_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    old = torch.randn(5, 6, generator=g, dtype=torch.float64)
    pair = torch.stack([torch.randperm(6, generator=g)[:2] for _ in range(5)])
    new = old.clone()
    new.scatter_add_(-1, pair, torch.randn(5, 2, generator=g, dtype=torch.float64))
    before, updated = old.softmax(-1), new.clone()
    rescale_two_path_(updated, old, pair)
    after = updated.softmax(-1)
    mask = torch.ones_like(old, dtype=torch.bool).scatter_(-1, pair, False)
    assert torch.allclose(after[mask], before[mask], atol=1e-12)
    assert torch.allclose(after.gather(-1, pair).sum(-1), before.gather(-1, pair).sum(-1))
    # within the pair, the update's preference is kept
    assert torch.allclose(
        (updated.gather(-1, pair)[:, 0] - updated.gather(-1, pair)[:, 1]),
        (new.gather(-1, pair)[:, 0] - new.gather(-1, pair)[:, 1]),
    )
    with pytest.raises(ValueError, match="pair"):
        rescale_two_path_(updated, old, pair[:, :1])


def test_latency_loss_forms() -> None:
    ce = torch.tensor(2.0, dtype=torch.float64)
    lat = torch.tensor(400.0, dtype=torch.float64, requires_grad=True)
    mul = latency_loss(ce, lat, 200.0, "mul#log", alpha=0.2, beta=0.6)
    assert float(mul.detach()) == pytest.approx(0.2 * 2.0 * (math.log(400) / math.log(200)) ** 0.6)
    at_target = latency_loss(ce, torch.tensor(200.0, dtype=torch.float64), 200.0, "mul#log")
    assert float(at_target) == pytest.approx(0.2 * 2.0)
    add = latency_loss(ce, lat, 200.0, "add#linear", lam=0.1)
    assert float(add.detach()) == pytest.approx(2.0 + 0.1 * (400 - 200) / 200)
    for loss in (mul, add):
        (g,) = torch.autograd.grad(loss, lat)
        assert float(g) > 0  # slower architectures cost more
    with pytest.raises(ValueError, match="> 1"):
        latency_loss(ce, lat, 1.0)
    with pytest.raises(ValueError, match="kind"):
        latency_loss(ce, lat, 200.0, "mul#linear")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["one", "two"])
def test_search_with_latency_loss_moves_towards_fast_ops(mode: str) -> None:
    torch.manual_seed(0)
    ops = ("mb_k3_e3", "mb_k5_e6", "zero")
    net = ChainSupernet(stem_channels=4, stages=((4, 2, 1),), ops=ops)
    table = LatencyTable(
        {e: {"mb_k3_e3": 300.0, "mb_k5_e6": 3000.0, "zero": 5.0} for e in net.edge_names()}
    )
    strat = ProxylessNAS(
        mode=mode,  # type: ignore[arg-type]
        latency_table=table,
        target_latency=50.0,
        loss_kind="add#linear",
        loss_params={"lam": 1.0},
        a_lr=0.05,
        generator=torch.Generator().manual_seed(0),
    )
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    batches = [(x, y)] * 15
    start = float(strat.expected_latency(net).detach())
    choice, history = search_chain(strat, net, batches, batches, 1)
    assert float(strat.expected_latency(net).detach()) < 0.7 * start
    assert len(choice) == 2 and set(choice) <= set(ops)
    assert {"arch_loss", "latency", "train_loss"} <= set(history[0])
    with pytest.raises(ValueError, match="target_latency"):
        ProxylessNAS(latency_table=table)


@pytest.mark.parametrize("lazy", [True, False])
def test_proxyless_on_darts_supernet(lazy: bool) -> None:
    """The same strategy drives the DARTS cell supernet through the shared search loop."""
    torch.manual_seed(0)
    net = Supernet(C=4, layers=3, steps=2, ops=("none", "skip_connect", "sep_conv_3x3"))
    strat = ProxylessNAS(mode="two", lazy=lazy, generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    before = {k: a.detach().clone() for k, a in net.alphas().items()}
    result = search(strat, net, [(x, y)] * 3, [(x, y)], 1)
    assert result.genotype.normal and result.genotype.reduce
    moved = [not torch.equal(before[k], a.detach()) for k, a in net.alphas().items()]
    assert all(moved)


_CELL_OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3")


def _cell_net(ops: tuple[str, ...] = _CELL_OPS) -> Supernet:
    torch.manual_seed(0)
    return Supernet(C=4, layers=3, steps=2, ops=ops)


@pytest.mark.parametrize("mode", ["one", "two"])
def test_lazy_paths_on_darts_cells_give_the_same_gradient(mode: str) -> None:
    """Path-level binarisation on the DARTS cell supernet: recomputing the non-active paths in
    the backward gives exactly the architecture gradient of evaluating them all, and leaves their
    BatchNorm statistics alone."""
    base = _cell_net()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    grads, samples = [], []
    for lazy in (True, False):
        net = _cell_net()
        net.load_state_dict(base.state_dict())
        mixing = ProxylessMixing(mode, lazy, torch.Generator().manual_seed(5))  # type: ignore[arg-type]
        mix = {k: mixing(a) for k, a in net.alphas().items()}
        loss = F.cross_entropy(net(x, mix), y)
        grads.append(torch.autograd.grad(loss, net.arch_parameters()))
        samples.append(mix)
        if lazy:
            lz = mix["normal"].lazy
            assert lz is not None and lz.numel() > 0
            cell = net.cells[0]
            assert not cell.reduction
            op = cell.edges[0].ops[int(lz[0, 0])]
            stats = [m.running_mean for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
            assert all(float(s.abs().sum()) == 0.0 for s in stats)
    for k in ("normal", "reduce"):
        assert torch.equal(samples[0][k].weights, samples[1][k].weights)  # same gates
    for g_lazy, g_full in zip(*grads):
        assert g_lazy.abs().sum() > 0
        assert torch.allclose(g_lazy, g_full, atol=1e-6)


def _cell_saved_bytes(ops: tuple[str, ...], lazy: bool) -> int:
    net = _cell_net(ops)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    mixing = ProxylessMixing("one", lazy, torch.Generator().manual_seed(0))
    with SavedTensorMeter(exclude=[*net.parameters(), x]) as meter:
        mix = {k: mixing(a) for k, a in net.alphas().items()}
        F.cross_entropy(net(x, mix), y).backward(inputs=net.arch_parameters())
    return meter.peak_bytes


def test_lazy_paths_keep_darts_cell_memory_flat_in_candidates() -> None:
    few = ("skip_connect", "sep_conv_3x3")
    lazy = [_cell_saved_bytes(o, True) for o in (few, _CELL_OPS)]
    full = [_cell_saved_bytes(o, False) for o in (few, _CELL_OPS)]
    # a one-hot sample stores one path per edge whatever N is, plus the edge inputs
    assert lazy[1] / lazy[0] <= 1.3
    assert full[1] / full[0] >= 2.0
    assert lazy[1] * 2 < full[1]


def test_one_search_entry_point_for_cells_and_chains() -> None:
    """search() drives the layer-wise chain too, and search_chain is exactly that loop."""
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    out = []
    for use_chain_loop in (False, True):
        torch.manual_seed(0)
        net = ChainSupernet(stem_channels=4, stages=((4, 2, 1),), ops=("mb_k3_e3", "zero"))
        strat = ProxylessNAS(a_lr=0.05, generator=torch.Generator().manual_seed(1))
        if use_chain_loop:
            choice, history = search_chain(strat, net, batches, batches, 2)
        else:
            res = search(strat, net, batches, batches, 2)
            choice, history = res.genotype, res.history
            assert res.model is net and len(res.step_seconds) == 4
        assert choice == net.derive() and len(choice) == 2
        out.append((choice, history, net.alpha.detach().clone()))
    assert out[0][0] == out[1][0]
    assert torch.equal(out[0][2], out[1][2])
    assert [h["arch_loss"] for h in out[0][1]] == [h["arch_loss"] for h in out[1][1]]


def test_chain_search_checkpoint_resumes(tmp_path: Path) -> None:
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]

    def run(epochs: int, ckpt: Path | None) -> torch.Tensor:
        torch.manual_seed(0)
        net = ChainSupernet(stem_channels=4, stages=((4, 2, 1),), ops=("mb_k3_e3", "zero"))
        strat = ProxylessNAS(a_lr=0.05, generator=torch.Generator().manual_seed(1))
        net.mixing = strat.mixing  # the checkpoint then carries the sampler's state
        search(strat, net, batches, batches, epochs, checkpoint=ckpt)
        return net.alpha.detach().clone()

    straight = run(2, None)
    ckpt = tmp_path / "chain.pt"
    run(1, ckpt)
    resumed = run(2, ckpt)
    assert torch.allclose(straight, resumed, atol=1e-6)


def test_mixing_bad_inputs() -> None:
    with pytest.raises(ValueError, match="mode"):
        ProxylessMixing("three")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(E, N\)"):
        ProxylessMixing()(torch.zeros(3))
    with pytest.raises(ValueError, match="weights must have shape"):
        mix_ops([nn.Identity()], torch.zeros(2), torch.ones(2))
