"""FBNet: temperature schedule, latency-aware loss, mask-weighted latency, search behaviour."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torchloom.nas.blocks import ChainSupernet, search_chain
from torchloom.nas.fbnet import FBNet, fbnet_loss, gumbel_temperature, sample_architectures
from torchloom.nas.latency import LatencyTable

OPS = ("mb_k3_e3", "mb_k5_e6", "zero")


def _net_and_table() -> tuple[ChainSupernet, LatencyTable]:
    net = ChainSupernet(stem_channels=4, stages=((4, 2, 1),), ops=OPS)
    lat = {"mb_k3_e3": 300.0, "mb_k5_e6": 3000.0, "zero": 5.0}
    return net, LatencyTable({e: dict(lat) for e in net.edge_names()})


def test_temperature_schedule() -> None:
    assert gumbel_temperature(0) == 5.0
    taus = [gumbel_temperature(e, 5.0, 0.956) for e in range(10)]
    ratios = [b / a for a, b in itertools.pairwise(taus)]
    assert all(r == pytest.approx(0.956) for r in ratios)
    assert gumbel_temperature(90) == pytest.approx(5.0 * math.exp(90 * math.log(0.956)))
    with pytest.raises(ValueError, match="decay"):
        gumbel_temperature(1, 5.0, 1.5)


def test_fbnet_loss_formula_and_gradient() -> None:
    ce = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    lat = torch.tensor(800.0, dtype=torch.float64, requires_grad=True)
    loss = fbnet_loss(ce, lat, alpha=0.2, beta=0.6)
    assert float(loss.detach()) == pytest.approx(1.5 * 0.2 * math.log(800.0) ** 0.6)
    g_ce, g_lat = torch.autograd.grad(loss, (ce, lat))
    assert float(g_ce) == pytest.approx(0.2 * math.log(800.0) ** 0.6)
    assert float(g_lat) == pytest.approx(1.5 * 0.2 * 0.6 * math.log(800.0) ** -0.4 / 800.0)
    with pytest.raises(ValueError, match="> 1"):
        fbnet_loss(ce, torch.tensor(0.5, dtype=torch.float64))


def test_masked_latency_is_table_weighted_sum() -> None:
    net, table = _net_and_table()
    strat = FBNet(latency_table=table)
    strat.setup(net, 1)
    masks = {"layers": torch.rand(2, 3).softmax(-1)}
    manual = table.expected(masks["layers"], net.edge_names(), list(OPS))
    assert torch.allclose(strat.masked_latency(net, masks), manual)
    p = net.alpha.softmax(-1)
    assert torch.allclose(strat.expected_latency(net), table.expected(p, net.edge_names(), OPS))


def test_scaled_offset_latency_is_affine_in_the_table() -> None:
    # the paper's unit: LAT of the target network in ms = fixed layers + scaled table sum
    net, table = _net_and_table()
    plain = FBNet(latency_table=table)
    scaled = FBNet(latency_table=table, latency_scale=1e-3, latency_offset=2.5)
    masks = {"layers": torch.rand(2, 3).softmax(-1)}
    want = 2.5 + 1e-3 * plain.masked_latency(net, masks)
    assert torch.allclose(scaled.masked_latency(net, masks), want)
    p = {"layers": net.alpha.softmax(-1)}
    assert torch.allclose(scaled.expected_latency(net), 2.5 + 1e-3 * plain.masked_latency(net, p))
    # a discrete choice (one-hot masks) gives offset + the table total of the chosen ops
    onehot = {"layers": torch.eye(3)[[0, 2]]}
    total = table.total(dict(zip(net.edge_names(), ["mb_k3_e3", "zero"])))
    assert float(scaled.masked_latency(net, onehot)) == pytest.approx(2.5 + 1e-3 * total)
    with pytest.raises(ValueError, match="latency_offset"):
        FBNet(latency_table=table, latency_offset=-1.0)
    with pytest.raises(ValueError, match="latency_scale"):
        FBNet(latency_table=table, latency_scale=0.0)


def test_search_anneals_and_latency_loss_favours_fast_ops() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    batches = [(x, y)] * 6
    final = {}
    for name, table_on in (("fbnet", True), ("plain", False)):
        torch.manual_seed(0)
        net, table = _net_and_table()
        strat = FBNet(
            latency_table=table if table_on else None,
            alpha=1.0,
            beta=3.0,
            a_lr=0.1,
            generator=torch.Generator().manual_seed(0),
        )
        _, history = search_chain(strat, net, batches, batches, 3)
        assert [h["tau"] for h in history] == pytest.approx(
            [gumbel_temperature(e) for e in range(3)]
        )
        final[name] = float(table.expected(net.alpha.detach().softmax(-1), net.edge_names(), OPS))
    # same data and seeds: only the latency term differs, and it lowers the expected latency
    assert final["fbnet"] < final["plain"]


def test_sample_architectures_follow_p_theta() -> None:
    net, _ = _net_and_table()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    n = 3000
    samples = sample_architectures(net, n, torch.Generator().manual_seed(0))
    counts = torch.zeros(2, 3)
    for s in samples:
        for e, i in enumerate(s["layers"]):
            counts[e, i] += 1
    p = net.alpha.detach().softmax(-1)
    assert bool(((counts / n - p).abs() <= 5 * (p * (1 - p) / n).sqrt()).all())


def test_optimisers_follow_the_paper_and_warm_up_trains_weights_only() -> None:
    # FBNet (Sec. 4.1 and its released config): w by SGD 0.1 (momentum 0.9, wd 1e-4), θ by
    # Adam 0.01 (betas 0.9/0.999, wd 5e-4); θ stays put during the weight-only warm-up
    torch.manual_seed(0)
    net, table = _net_and_table()
    strat = FBNet(latency_table=table, generator=torch.Generator().manual_seed(0))
    strat.setup(net, 10)
    assert strat.w_opt is not None and strat.a_opt is not None
    w, a = strat.w_opt.param_groups[0], strat.a_opt.param_groups[0]
    assert isinstance(strat.w_opt, torch.optim.SGD) and isinstance(strat.a_opt, torch.optim.Adam)
    assert (w["lr"], w["momentum"], w["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert (a["lr"], a["betas"], a["weight_decay"]) == (0.01, (0.9, 0.999), 5e-4)
    torch.manual_seed(0)
    net, table = _net_and_table()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    strat = FBNet(latency_table=table, arch_start_epoch=1)
    before = net.alpha.detach().clone()
    weights = [p.detach().clone() for p in net.weight_parameters()]
    strat.setup(net, 2)
    strat.on_epoch_start(net, 0)
    strat.step(net, (x, y), (x, y), 0)
    assert torch.equal(net.alpha.detach(), before)
    assert any(not torch.equal(p0, p) for p0, p in zip(weights, net.weight_parameters()))
    strat.on_epoch_start(net, 1)
    strat.step(net, (x, y), (x, y), 1)
    assert not torch.equal(net.alpha.detach(), before)
