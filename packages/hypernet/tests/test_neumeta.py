"""NeuMeta permutation smoothing: function unchanged, smoother weights, TSP near exact."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.hypernet import (
    NeuMeta,
    fit_neumeta,
    path_length,
    permute_for_smoothness,
    shortest_hamiltonian_path,
    weighted_reconstruction_loss,
)


def _brute(dist: torch.Tensor) -> float:
    n = dist.shape[0]
    return min(path_length(dist, list(p)) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("n", [3, 5, 7])
def test_held_karp_is_exact(n):
    g = torch.Generator().manual_seed(n)
    pts = torch.rand(n, 3, generator=g)
    dist = torch.cdist(pts, pts, p=1)
    order = shortest_hamiltonian_path(dist, exact=True)
    assert sorted(order) == list(range(n))
    assert path_length(dist, order) == pytest.approx(_brute(dist))


@pytest.mark.parametrize("seed", range(5))
def test_two_opt_within_bound_of_exact(seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(9, 4, generator=g)
    dist = torch.cdist(pts, pts, p=1)
    exact = path_length(dist, shortest_hamiltonian_path(dist, exact=True))
    heur_order = shortest_hamiltonian_path(dist, exact=False)
    assert sorted(heur_order) == list(range(9))
    heur = path_length(dist, heur_order)
    assert exact - 1e-9 <= heur <= 1.15 * exact


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 14), st.integers(2, 14), st.booleans())
def test_permutation_keeps_function(w1, w2, batchnorm):
    layers: list[nn.Module] = [nn.Linear(5, w1)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(w1))
    layers += [nn.ReLU(), nn.Linear(w1, w2), nn.Tanh(), nn.Linear(w2, 3)]
    model = nn.Sequential(*layers)
    if batchnorm:
        model.train()
        model(torch.randn(32, 5))  # non-trivial running statistics
    model.eval()
    permuted, orders = permute_for_smoothness(model)
    assert [sorted(o) for o in orders] == [list(range(w1)), list(range(w2))]
    x = torch.randn(6, 5)
    torch.testing.assert_close(permuted(x), model(x))


def _roughness(w: torch.Tensor) -> float:
    return float((w[1:] - w[:-1]).detach().abs().sum())


def test_permutation_smooths_neighbouring_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 4))
    permuted, _ = permute_for_smoothness(model)
    assert _roughness(permuted[0].weight) < 0.9 * _roughness(model[0].weight)


def test_bad_input():
    with pytest.raises(TypeError, match="Sequential"):
        permute_for_smoothness(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="LayerNorm"):
        permute_for_smoothness(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="square"):
        shortest_hamiltonian_path(torch.zeros(2, 3))


# --- the INR hypernetwork -------------------------------------------------------------------


def _small(**kw):
    torch.manual_seed(0)
    return NeuMeta(6, 3, depth=2, max_width=12, min_width=3, hidden=16, layers=2, num_freqs=3, **kw)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 20))
def test_sampled_network_has_requested_shapes(width):
    h = _small()
    net = h.sample(width)
    assert dict((n, p.shape) for n, p in net.named_parameters()) == h.shapes(width)
    assert net(torch.randn(4, 6)).shape == (4, 3)


def test_forward_equals_sampled_module():
    h = _small()
    x = torch.randn(5, 6)
    for width in (3, 7, 12):
        torch.testing.assert_close(h(x, width), h.sample(width)(x))


def test_averaging_without_noise_is_one_draw():
    h = _small()
    g = torch.Generator().manual_seed(0)
    one = h.weights(7)
    many = h.weights(7, noise=0.0, samples=4, generator=g)
    for n in one:
        torch.testing.assert_close(many[n], one[n])
    noisy = h.weights(7, noise=1.0, samples=4, generator=g)
    assert any(not torch.allclose(noisy[n], one[n]) for n in one)


def test_weights_scale_with_inverse_fan_in():
    # the heads predict fan-in-independent values; a tensor's entries are divided by fan-in
    h = _small()
    with torch.no_grad():
        for p in h.parameters():
            p.zero_()
        for head in h.heads.values():
            head.out.bias.fill_(1.0)
    w = h.weights(5)
    torch.testing.assert_close(w["0.weight"], torch.full((5, 6), 1 / 6))
    torch.testing.assert_close(w["2.weight"], torch.full((5, 5), 1 / 5))
    torch.testing.assert_close(w["0.bias"], torch.ones(5))


def test_gradients_reach_every_head():
    h = _small()
    h(torch.randn(4, 6), 5).square().sum().backward()
    for name, head in h.heads.items():
        assert head.out.weight.grad is not None and head.out.weight.grad.abs().sum() > 0, name


def test_weighted_reconstruction_loss_formula():
    g = torch.Generator().manual_seed(0)
    t = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}
    p = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in t.items()}
    assert float(weighted_reconstruction_loss(t, t)) == 0.0
    manual = []
    for k in t:
        imp = t[k].abs() + 1e-6
        manual.append((imp / imp.max() * (p[k] - t[k]) ** 2).mean())
    torch.testing.assert_close(weighted_reconstruction_loss(p, t), torch.stack(manual).mean())
    with pytest.raises(ValueError, match="different tensors"):
        weighted_reconstruction_loss({"a": p["a"]}, t)


def test_fit_reconstructs_the_pretrained_network():
    h = _small()
    torch.manual_seed(1)
    target = nn.Sequential(
        nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)
    )
    tgt = dict(target.named_parameters())
    with torch.no_grad():
        before = float(weighted_reconstruction_loss(h.weights(12), tgt))
    losses = fit_neumeta(
        h,
        None,
        None,
        ce_weight=0.0,
        steps=150,
        pretrained=target,
        lr=3e-3,
        reg_weight=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        after = float(weighted_reconstruction_loss(h.weights(12), tgt))
    assert after < 0.5 * before
    assert len(losses) == 150


def test_fit_learns_the_task_at_several_widths():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    h = _small()
    fit_neumeta(h, x, y, steps=300, lr=3e-3, generator=g)
    with torch.no_grad():
        for width in (6, 9, 12):
            acc = float((h(x, width).argmax(-1) == y).float().mean())
            assert acc > 0.65, (width, acc)  # majority class: 0.5


def test_neumeta_bad_input():
    h = _small()
    with pytest.raises(ValueError, match="width"):
        h.weights(0)
    with pytest.raises(ValueError, match="max_width"):
        NeuMeta(6, 3, max_width=4, min_width=8)
    with pytest.raises(ValueError, match="x must be"):
        h(torch.randn(4, 5), 3)
    with pytest.raises(ValueError, match="max_width"):
        fit_neumeta(
            h, None, None, ce_weight=0.0, steps=1, pretrained=nn.Sequential(nn.Linear(6, 3))
        )
    with pytest.raises(ValueError, match="x and y"):
        fit_neumeta(h, None, None, steps=1)


def test_fit_ema_holds_the_moving_average_of_the_parameters():
    # one step with decay d: the returned INR is d·θ₀ + (1 − d)·θ₁, θ₁ the plain step's result
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    h0 = _small()
    start = copy.deepcopy(h0.state_dict())
    plain, averaged = copy.deepcopy(h0), copy.deepcopy(h0)
    kw = {"steps": 1, "lr": 1e-2, "warmup": 1}
    fit_neumeta(plain, x, y, generator=torch.Generator().manual_seed(1), **kw)
    fit_neumeta(averaged, x, y, ema_decay=0.75, generator=torch.Generator().manual_seed(1), **kw)
    moved = plain.state_dict()
    assert any(not torch.equal(moved[k], start[k]) for k in start)
    for k, v in averaged.state_dict().items():
        torch.testing.assert_close(v, 0.75 * start[k] + 0.25 * moved[k])
    with pytest.raises(ValueError, match="ema_decay"):
        fit_neumeta(h0, x, y, steps=1, ema_decay=1.0)
    with pytest.raises(ValueError, match="warmup"):
        fit_neumeta(h0, x, y, steps=1, warmup=-1)


def test_encode_sizes_lifts_the_size_ratios():
    # with encode_sizes the size ratios get the same sin/cos octaves as the positions
    raw, lifted = _small(), _small(encode_sizes=True)
    f_raw = raw._features("0.weight", torch.Size((5, 6)), 0.0, 1, None, True)
    f_lift = lifted._features("0.weight", torch.Size((5, 6)), 0.0, 1, None, True)
    assert f_raw.shape == (1, 30, 5 + 3 * 2 * 3)
    assert f_lift.shape == (1, 30, 5 + 5 * 2 * 3)
    x = f_lift[..., :5]
    torch.testing.assert_close(x, f_raw[..., :5])
    expected = [x]
    for k in range(3):
        expected += [torch.sin(2.0**k * math.pi * x), torch.cos(2.0**k * math.pi * x)]
    torch.testing.assert_close(f_lift, torch.cat(expected, dim=-1))
    # the rows-ratio feature (index 3) is 5/12 here; its octaves differ between widths
    other = lifted._features("0.weight", torch.Size((7, 6)), 0.0, 1, None, True)
    assert not torch.allclose(other[0, 0, 5:], f_lift[0, 0, 5:])
    net = lifted.sample(4)
    assert net(torch.randn(2, 6)).shape == (2, 3)


def test_fit_constant_schedule_takes_twice_the_cosine_second_step():
    # steps=2: the cosine factor at the second step is 0.5, the constant one 1; both runs see
    # the same first step and the same gradient, so Adam's second updates differ by exactly 2x
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    h0 = _small()
    runs = {}
    for name, kw in {
        "one": {"steps": 1},
        "cos": {"steps": 2},
        "const": {"steps": 2, "cosine": False},
    }.items():
        h = copy.deepcopy(h0)
        fit_neumeta(
            h, x, y, lr=1e-2, clip_grad=None, generator=torch.Generator().manual_seed(1), **kw
        )
        runs[name] = h.state_dict()
    for k, p1 in runs["one"].items():
        torch.testing.assert_close(runs["cos"][k] - p1, 0.5 * (runs["const"][k] - p1))
    assert any(not torch.equal(runs["const"][k], p1) for k, p1 in runs["one"].items())
