"""SSVI: folded-normal criteria, fixed-size sparse subspace, removal-and-addition, accounting."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.bayes.ssvi import (
    SSVI,
    erk_densities,
    folded_normal_mean,
    folded_normal_var,
    random_masks,
    removal_score,
    storage,
    uniform_densities,
)
from torchloom.bayes.vi import (
    VariationalConv2d,
    VariationalLinear,
    kl_divergence,
    negative_elbo,
    variational_layers,
)


def _model(device: torch.device | str) -> nn.Module:
    return nn.Sequential(
        VariationalConv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        VariationalLinear(4 * 36, 32),
        nn.ReLU(),
        VariationalLinear(32, 3),
    ).to(device)


def _batch(device: torch.device | str, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 6, 6, device=device), torch.randint(0, 3, (n,), device=device)


def _train(model: nn.Module, ssvi: SSVI, steps: int, device: torch.device | str) -> list[int]:
    sizes = []
    for _ in range(steps):
        x, y = _batch(device)
        ssvi.optimizer.zero_grad()
        negative_elbo(model(x), y, kl_divergence(model), n_data=100).backward()
        ssvi.step()
        sizes.append(ssvi.num_active())
    return sizes


# -- folded normal --------------------------------------------------------------------------
def test_folded_normal_moments_vs_sampling(device):
    g = torch.Generator(device=device).manual_seed(0)
    mu = torch.tensor([0.0, 0.3, -1.2, 2.5], device=device, dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 0.7, 0.4], device=device, dtype=torch.float64)
    n = 400_000
    theta = (mu + sigma * torch.randn(n, 4, generator=g, device=device, dtype=mu.dtype)).abs()
    m, v = folded_normal_mean(mu, sigma), folded_normal_var(mu, sigma)
    se_m = theta.std(0) / math.sqrt(n)
    assert bool(((theta.mean(0) - m).abs() < 5 * se_m).all())
    torch.testing.assert_close(theta.var(0), v, rtol=0.01, atol=0)


def test_folded_normal_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    mu = torch.tensor([-2.0, -0.1, 0.0, 0.4, 3.0], dtype=torch.float64)
    sigma = torch.tensor([0.5, 1.0, 2.0, 0.3, 1.5], dtype=torch.float64)
    for i in range(5):
        ref = stats.foldnorm(c=abs(float(mu[i] / sigma[i])), scale=float(sigma[i]))
        assert float(folded_normal_mean(mu, sigma)[i]) == pytest.approx(ref.mean(), rel=1e-10)
        assert float(folded_normal_var(mu, sigma)[i]) == pytest.approx(ref.var(), rel=1e-8)
        snr = float(removal_score(mu, sigma, "snr_abs")[i])
        assert snr == pytest.approx(ref.mean() / ref.std(), rel=1e-8)


@settings(max_examples=40, deadline=None)
@given(mu=st.floats(-5, 5), sigma=st.floats(0.01, 5))
def test_folded_normal_bounds(mu, sigma):
    """|μ| ≤ E|θ| ≤ sqrt(μ² + σ²) (Jensen) and 0 ≤ Var|θ| ≤ σ²."""
    m_t, s_t = torch.tensor([mu], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64)
    m = float(folded_normal_mean(m_t, s_t))
    v = float(folded_normal_var(m_t, s_t))
    assert abs(mu) - 1e-12 <= m <= math.sqrt(mu * mu + sigma * sigma) + 1e-12
    assert -1e-12 <= v <= sigma * sigma * (1 + 1e-9)


def test_removal_scores_definitions():
    mu = torch.tensor([0.5, -2.0, 0.0])
    sigma = torch.tensor([0.1, 1.0, 0.3])
    torch.testing.assert_close(removal_score(mu, sigma, "mean"), mu.abs())
    torch.testing.assert_close(removal_score(mu, sigma, "snr"), mu.abs() / sigma)
    torch.testing.assert_close(removal_score(mu, sigma, "abs_mean"), folded_normal_mean(mu, sigma))
    snr_abs = removal_score(mu, sigma, "snr_abs")
    # a zero-mean weight has the smallest SNR(|θ|): sqrt(2/π)/sqrt(1 − 2/π) ≈ 1.3236
    assert float(snr_abs[2]) == pytest.approx(math.sqrt(2 / math.pi / (1 - 2 / math.pi)), rel=1e-5)
    assert bool(
        torch.isfinite(removal_score(torch.tensor([50.0]), torch.tensor([1e-3]), "snr_abs")).all()
    )
    with pytest.raises(ValueError, match="criterion"):
        removal_score(mu, sigma, "magnitude")  # type: ignore[arg-type]


# -- subspace sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_density_outside_unit_interval_raises(bad, device):
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="density"):
        SSVI(model, opt, density=bad, total_steps=10)
    with pytest.raises(ValueError, match="density"):
        random_masks([(3, 3)], bad)


def test_density_type_and_other_arguments_checked(device):
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="density"):
        SSVI(model, opt, density=True, total_steps=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_steps"):
        SSVI(model, opt, density=0.5, total_steps=0)
    with pytest.raises(ValueError, match="removal_fraction"):
        SSVI(model, opt, density=0.5, total_steps=10, removal_fraction=1.0)
    with pytest.raises(ValueError, match="addition"):
        SSVI(model, opt, density=0.5, total_steps=10, addition="magnitude")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no variational layers"):
        lin = nn.Linear(2, 2)
        SSVI(lin, torch.optim.SGD(lin.parameters(), lr=0.1), density=0.5, total_steps=10)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.3, 0.9])
def test_layer_densities_meet_the_budget(density):
    shapes = [(4, 1, 3, 3), (32, 144), (3, 32)]
    total = sum(math.prod(s) for s in shapes)
    for dens in (erk_densities(shapes, density), uniform_densities(shapes, density)):
        assert all(0 < d <= 1 for d in dens)
        kept = sum(d * math.prod(s) for d, s in zip(dens, shapes))
        assert kept == pytest.approx(density * total, rel=1e-9)
    masks = random_masks(shapes, density, "erk", torch.Generator().manual_seed(0))
    for m, d, s in zip(masks, erk_densities(shapes, density), shapes):
        assert m.shape == s and int(m.sum()) == max(1, round(d * math.prod(s)))


def test_uniform_keeps_first_layer_dense():
    dens = uniform_densities([(8, 1, 3, 3), (100, 72), (10, 100)], 0.1)
    assert dens[0] == 1.0 and dens[1] == dens[2] < 0.1


def test_mask_size_constant_and_removed_weights_stay_zero(device):
    """Across many removal-and-addition rounds and momentum/weight-decay optimizer steps, every
    layer keeps exactly its number of active weights and inactive μ stay exactly 0."""
    torch.manual_seed(0)
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    ssvi = SSVI(
        model,
        opt,
        density=0.2,
        total_steps=60,
        update_interval=3,
        removal_fraction=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    per_layer = [layer.num_active() for layer in ssvi.layers]
    first_masks = [layer.weight_mask.clone() for layer in ssvi.layers]  # type: ignore[union-attr]
    sizes = _train(model, ssvi, 45, device)
    assert len(set(sizes)) == 1 and sizes[0] == sum(per_layer)
    assert [layer.num_active() for layer in ssvi.layers] == per_layer
    assert len(ssvi.history) == 14 and all(u.swapped > 0 for u in ssvi.history[:5])
    changed = sum(
        int((layer.weight_mask != m0).sum())  # type: ignore[operator]
        for layer, m0 in zip(ssvi.layers, first_masks)
    )
    assert changed > 0
    for layer in ssvi.layers:
        assert layer.weight_mask is not None
        off = layer.weight_mask == 0
        assert bool((layer.weight_mu[off] == 0).all())
    # and for Adam, whose update of a zero-gradient entry with stale moments is non-zero
    opt2 = torch.optim.Adam(model.parameters(), lr=0.01)
    ssvi2 = SSVI(
        model,
        opt2,
        density=0.2,
        total_steps=30,
        update_interval=2,
        addition="random",
        generator=torch.Generator().manual_seed(1),
    )
    _train(model, ssvi2, 20, device)
    for layer in ssvi2.layers:
        assert layer.weight_mask is not None
        assert bool((layer.weight_mu[layer.weight_mask == 0] == 0).all())
        assert layer.num_active() == int(layer.weight_mask.sum())


def test_removal_and_gradient_addition_pick_the_right_weights(device):
    torch.manual_seed(0)
    layer = VariationalLinear(10, 4, sigma_init=0.1).to(device)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    ssvi = SSVI(
        layer,
        opt,
        density=0.5,
        total_steps=100,
        update_interval=1,
        removal_fraction=0.25,
        schedule="constant",
        criterion="snr_abs",
        distribution="uniform",
        generator=torch.Generator().manual_seed(0),
    )
    mask0 = layer.weight_mask.clone().reshape(-1)  # type: ignore[union-attr]
    with torch.no_grad():
        layer.weight_mu.copy_(torch.randn(4, 10, device=device) * layer.weight_mask)  # type: ignore[operator]
        layer.weight_rho.add_(torch.rand(4, 10, device=device))
    x, y = torch.randn(8, 10, device=device), torch.randint(0, 4, (8,), device=device)
    opt.zero_grad()
    negative_elbo(layer(x), y, layer.kl(), 100).backward()
    assert layer.dense_grad is not None
    grad = layer.dense_grad.reshape(-1).clone()
    score = removal_score(layer.weight_mu, layer.weight_sigma, "snr_abs").detach().reshape(-1)
    sigma_before = layer.weight_sigma.detach().reshape(-1).clone()
    ssvi.step()  # lr 0: only the subspace update changes anything
    k = int(0.25 * 20)
    active0 = mask0.nonzero().squeeze(1)
    want_removed = set(active0[score[active0].argsort()[:k]].tolist())
    inactive0 = (mask0 == 0).nonzero().squeeze(1)
    want_added = set(inactive0[grad[inactive0].abs().argsort(descending=True)[:k]].tolist())
    mask1 = layer.weight_mask.reshape(-1)  # type: ignore[union-attr]
    assert set((mask0.bool() & ~mask1.bool()).nonzero().squeeze(1).tolist()) == want_removed
    assert set((~mask0.bool() & mask1.bool()).nonzero().squeeze(1).tolist()) == want_added
    added = torch.tensor(sorted(want_added), device=device)
    mu1 = layer.weight_mu.reshape(-1)
    assert bool((mu1[added] == 0).all())
    torch.testing.assert_close(
        layer.weight_sigma.reshape(-1)[added],
        torch.full((k,), 0.1, device=device),
        rtol=1e-5,
        atol=0,
    )
    kept = mask1.bool() & mask0.bool()
    torch.testing.assert_close(layer.weight_sigma.detach().reshape(-1)[kept], sigma_before[kept])


def test_new_sigma_mean_and_optimizer_state_reset(device):
    torch.manual_seed(0)
    layer = VariationalLinear(12, 6, sigma_init=0.05).to(device)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    ssvi = SSVI(
        layer,
        opt,
        density=0.4,
        total_steps=50,
        update_interval=4,
        new_sigma="mean",
        addition="random",
        schedule="constant",
        distribution="uniform",
        generator=torch.Generator().manual_seed(0),
    )
    x, y = torch.randn(8, 12, device=device), torch.randint(0, 6, (8,), device=device)
    for _ in range(3):
        opt.zero_grad()
        negative_elbo(layer(x), y, layer.kl(), 10).backward()
        ssvi.step()
    mask0 = layer.weight_mask.clone()  # type: ignore[union-attr]
    opt.zero_grad()
    negative_elbo(layer(x), y, layer.kl(), 10).backward()
    # what the update will see: σ of the active weights after this optimizer step
    opt.step()
    ssvi.apply_masks()
    ssvi.step_count += 1
    sigma = layer.weight_sigma.detach().clone()
    upd = ssvi.update_subspace()
    assert upd.swapped == int(0.3 * int(mask0.sum()))
    mask1 = layer.weight_mask
    assert mask1 is not None
    added = (mask1 > 0) & (mask0 == 0)
    removed = (mask0 > 0) & (mask1 == 0)
    kept = (mask0 > 0) & (mask1 > 0)
    expect = float(sigma[kept].mean())
    torch.testing.assert_close(
        layer.weight_sigma.detach()[added],
        torch.full((int(added.sum()),), expect, device=device),
        rtol=1e-4,
        atol=0,
    )
    for p in (layer.weight_mu, layer.weight_rho):
        st_ = opt.state[p]
        for name in ("exp_avg", "exp_avg_sq"):
            assert bool((st_[name][added | removed] == 0).all())
            assert bool((st_[name][kept] != 0).any())


def test_schedule_cosine_to_zero_and_stop():
    layer = VariationalLinear(4, 4)
    ssvi = SSVI(
        layer,
        torch.optim.SGD(layer.parameters(), lr=0.1),
        density=0.5,
        total_steps=100,
        update_interval=10,
        removal_fraction=0.3,
        stop_fraction=0.8,
    )
    assert ssvi.fraction_at(0) == pytest.approx(0.3)
    assert ssvi.fraction_at(40) == pytest.approx(0.15)
    assert ssvi.fraction_at(80) == pytest.approx(0.0, abs=1e-12)
    assert ssvi.update_due(70) and not ssvi.update_due(80) and not ssvi.update_due(75)


def test_density_one_is_dense_vi(device):
    torch.manual_seed(0)
    model = _model(device)
    ssvi = SSVI(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        density=1.0,
        total_steps=10,
        update_interval=2,
    )
    _train(model, ssvi, 4, device)
    assert ssvi.num_active() == ssvi.num_weights()
    assert all(u.swapped == 0 for u in ssvi.history)


def test_storage_and_training_flops(device):
    torch.manual_seed(0)
    dense = _model(device)
    sparse = _model(device)
    n_bias = sum(layer.bias_mu.numel() for layer in variational_layers(dense))  # type: ignore[union-attr]
    d_weights = sum(layer.weight_mu.numel() for layer in variational_layers(dense))
    assert storage(dense) == {"params": 2 * (d_weights + n_bias), "bytes": 8 * (d_weights + n_bias)}
    opt = torch.optim.SGD(sparse.parameters(), lr=0.01)
    ssvi = SSVI(sparse, opt, density=0.1, total_steps=100, update_interval=5, addition="gradient")
    s = ssvi.num_active()
    assert storage(sparse) == {"params": 2 * (s + n_bias), "bytes": 8 * (s + n_bias) + 4 * s}
    # FLOPs of one sparse training step = 3 × the sum of per-layer sparse forward costs
    _train(sparse, ssvi, 1, device)
    shapes = [torch.Size((16, 1, 6, 6)), torch.Size((16, 144)), torch.Size((16, 32))]
    fwd = sum(layer.forward_flops(sh) for layer, sh in zip(ssvi.layers, shapes))
    assert ssvi.training_flops == 3 * fwd
    # an update step with gradient addition adds the dense weight-gradient cost
    before = ssvi.training_flops
    _train(sparse, ssvi, 4, device)
    extra = sum(layer.weight_grad_flops(sh) for layer, sh in zip(ssvi.layers, shapes))
    assert ssvi.training_flops - before == 4 * 3 * fwd + extra


def test_masks_survive_state_dict_round_trip(device):
    torch.manual_seed(0)
    model = _model(device)
    ssvi = SSVI(
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        density=0.2,
        total_steps=20,
        update_interval=2,
    )
    _train(model, ssvi, 3, device)
    fresh = _model(device)
    fresh.load_state_dict(model.state_dict())
    for a, b in zip(variational_layers(model), variational_layers(fresh)):
        assert b.weight_mask is not None and a.weight_mask is not None
        torch.testing.assert_close(a.weight_mask, b.weight_mask)
    x, _ = _batch(device)
    torch.testing.assert_close(model[0](x, sample=False), fresh[0](x, sample=False))


def test_snr_abs_ranks_like_snr_for_a_gaussian():
    """Both SNRs depend on μ/σ only (E|θ| and sqrt(Var|θ|) scale with σ), and SNR(|θ|) grows
    with |μ|/σ: away from its flat minimum at μ = 0 the two criteria order weights alike."""
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(500, generator=g, dtype=torch.float64) + 0.05
    z = (torch.rand(500, generator=g, dtype=torch.float64) * 6 + 0.5) * torch.sign(
        torch.randn(500, generator=g, dtype=torch.float64)
    )
    mu = z * sigma
    a = removal_score(mu, sigma, "snr_abs").argsort()
    b = removal_score(mu, sigma, "snr").argsort()
    assert torch.equal(a, b)
    torch.testing.assert_close(
        removal_score(mu, sigma, "snr_abs"), removal_score(z.abs(), torch.ones_like(z), "snr_abs")
    )


@settings(max_examples=12, deadline=None)
@given(
    density=st.floats(0.05, 1.0),
    frac=st.floats(0.0, 0.9),
    criterion=st.sampled_from(["mean", "snr", "abs_mean", "snr_abs"]),
    addition=st.sampled_from(["gradient", "random"]),
    distribution=st.sampled_from(["erk", "uniform"]),
    seed=st.integers(0, 1000),
)
def test_subspace_invariants_property(density, frac, criterion, addition, distribution, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(VariationalLinear(6, 12), nn.ReLU(), VariationalLinear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ssvi = SSVI(
        model,
        opt,
        density=density,
        total_steps=12,
        update_interval=2,
        removal_fraction=frac,
        criterion=criterion,
        addition=addition,
        distribution=distribution,
        generator=torch.Generator().manual_seed(seed),
    )
    counts = [layer.num_active() for layer in ssvi.layers]
    assert sum(counts) == pytest.approx(density * ssvi.num_weights(), abs=len(counts))
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    for _ in range(8):
        opt.zero_grad()
        negative_elbo(model(x), y, kl_divergence(model), 50).backward()
        ssvi.step()
        assert [layer.num_active() for layer in ssvi.layers] == counts
        for layer in ssvi.layers:
            assert layer.weight_mask is not None
            assert bool((layer.weight_mu[layer.weight_mask == 0] == 0).all())
