"""Mean-field Gaussian VI layers: KL, local reparameterisation, ELBO, predictive, ECE, FLOPs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.bayes.vi import (
    TrainingFlopCounter,
    VariationalConv2d,
    VariationalLinear,
    expected_calibration_error,
    gaussian_kl,
    kl_divergence,
    negative_elbo,
    predictive,
)


def test_gaussian_kl_matches_torch_distributions(device):
    mu_q = torch.randn(50, device=device, dtype=torch.float64)
    sig_q = torch.rand(50, device=device, dtype=torch.float64) + 0.05
    ours = gaussian_kl(mu_q, sig_q, 0.3, 0.7)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, sig_q),
        torch.distributions.Normal(torch.full_like(mu_q, 0.3), torch.full_like(mu_q, 0.7)),
    )
    torch.testing.assert_close(ours, ref)


def test_gaussian_kl_closed_form_vs_monte_carlo(device):
    g = torch.Generator(device=device).manual_seed(1)
    mu_q = torch.tensor([0.5, -1.0, 0.0], device=device, dtype=torch.float64)
    sig_q = torch.tensor([0.2, 0.8, 1.5], device=device, dtype=torch.float64)
    n = 400_000
    theta = mu_q + sig_q * torch.randn(n, 3, generator=g, device=device, dtype=torch.float64)
    q = torch.distributions.Normal(mu_q, sig_q)
    p = torch.distributions.Normal(torch.zeros_like(mu_q), torch.ones_like(mu_q))
    mc = (q.log_prob(theta) - p.log_prob(theta)).mean(0)
    se = (q.log_prob(theta) - p.log_prob(theta)).std(0) / math.sqrt(n)
    closed = gaussian_kl(mu_q, sig_q, 0.0, 1.0)
    assert bool(((mc - closed).abs() < 5 * se + 1e-6).all()), (mc, closed, se)


@settings(max_examples=30, deadline=None)
@given(
    mu=st.floats(-3, 3),
    sigma=st.floats(0.05, 3),
    sigma_p=st.floats(0.1, 3),
)
def test_gaussian_kl_nonnegative_and_zero_at_prior(mu, sigma, sigma_p):
    kl = gaussian_kl(torch.tensor([mu]), torch.tensor([sigma]), 0.0, sigma_p)
    assert float(kl) >= -1e-6
    zero = gaussian_kl(torch.tensor([0.0]), torch.tensor([sigma_p]), 0.0, sigma_p)
    assert abs(float(zero)) < 1e-6


def test_layer_kl_sums_over_active_weights(device):
    layer = VariationalLinear(6, 4, prior_sigma=0.5, sigma_init=0.1).to(device)
    mask = (torch.rand(4, 6, device=device) > 0.5).float()
    layer.set_mask(mask)
    w = gaussian_kl(layer.weight_mu, layer.weight_sigma, 0.0, 0.5)
    assert layer.bias_mu is not None and layer.bias_sigma is not None
    b = gaussian_kl(layer.bias_mu, layer.bias_sigma, 0.0, 0.5)
    torch.testing.assert_close(layer.kl(), (w * mask).sum() + b.sum())
    torch.testing.assert_close(kl_divergence(nn.Sequential(layer, nn.ReLU())), layer.kl())


@pytest.mark.parametrize("parametrization", ["softplus", "log"])
def test_parametrizations_start_at_sigma_init(parametrization, device):
    layer = VariationalLinear(3, 2, sigma_init=0.02, parametrization=parametrization).to(device)
    torch.testing.assert_close(
        layer.weight_sigma, torch.full((2, 3), 0.02, device=device), rtol=1e-5, atol=0
    )


def _moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.var(0)


def test_local_reparameterisation_linear_matches_weight_sampling(device):
    """Sampling pre-activations gives the same output mean/variance as sampling weights."""
    torch.manual_seed(0)
    layer = VariationalLinear(5, 3, sigma_init=0.3).to(device, torch.float64)
    with torch.no_grad():
        layer.weight_rho.add_(torch.randn_like(layer.weight_rho) * 0.3)
    x = torch.randn(2, 5, device=device, dtype=torch.float64)
    s = 10_000
    with torch.no_grad():
        local = torch.stack([layer(x) for _ in range(s)])
        assert layer.bias_mu is not None and layer.bias_sigma is not None
        eps_w = torch.randn(s, 3, 5, device=device, dtype=torch.float64)
        w = layer.weight_mu + layer.weight_sigma * eps_w
        b = layer.bias_mu + layer.bias_sigma * torch.randn(s, 3, device=device, dtype=x.dtype)
        direct = torch.einsum("bi,soi->sbo", x, w) + b[:, None, :]
    m_local, v_local = _moments(local)
    m_direct, v_direct = _moments(direct)
    exact_m = F.linear(x, layer.weight_mu, layer.bias_mu)
    exact_v = F.linear(x * x, layer.weight_sigma**2, layer.bias_sigma**2).detach()
    tol = 6 * float(exact_v.max().sqrt()) / s**0.5
    for m, v in ((m_local, v_local), (m_direct, v_direct)):
        torch.testing.assert_close(m, exact_m.detach(), atol=tol, rtol=0)
        torch.testing.assert_close(v, exact_v, rtol=0.05, atol=1e-8)


def test_local_reparameterisation_conv_matches_weight_sampling(device):
    torch.manual_seed(0)
    layer = VariationalConv2d(2, 3, 3, padding=1, sigma_init=0.2).to(device, torch.float64)
    x = torch.randn(1, 2, 4, 4, device=device, dtype=torch.float64)
    s = 6000
    with torch.no_grad():
        local = torch.stack([layer(x) for _ in range(s)])
        direct = []
        for _ in range(s):
            w = layer.weight_mu + layer.weight_sigma * torch.randn_like(layer.weight_mu)
            assert layer.bias_mu is not None and layer.bias_sigma is not None
            b = layer.bias_mu + layer.bias_sigma * torch.randn_like(layer.bias_mu)
            direct.append(F.conv2d(x, w, b, padding=1))
        direct_t = torch.stack(direct)
    # per output location the marginals agree (local reparameterisation decorrelates locations)
    for samples in (local, direct_t):
        m, v = _moments(samples)
        assert layer.bias_sigma is not None
        exact_v = F.conv2d(x * x, layer.weight_sigma**2, layer.bias_sigma**2, padding=1).detach()
        tol = 6 * float(exact_v.max().sqrt()) / s**0.5
        torch.testing.assert_close(m, layer(x, sample=False).detach(), atol=tol, rtol=0)
        torch.testing.assert_close(v, exact_v, rtol=0.1, atol=1e-6)


def test_masked_weights_are_exactly_zero_in_every_sample(device):
    layer = VariationalLinear(4, 3, sigma_init=0.5).to(device)
    mask = torch.zeros(3, 4, device=device)
    mask[:, 0] = 1.0
    layer.set_mask(mask)
    x = torch.zeros(7, 4, device=device)
    x[:, 1:] = torch.randn(7, 3, device=device)  # only inputs that hit masked weights
    assert layer.bias_mu is not None
    with torch.no_grad():
        layer.bias_rho.fill_(-30.0)  # type: ignore[union-attr]
        out = layer(x)
    torch.testing.assert_close(out, layer.bias_mu.expand(7, 3), atol=1e-6, rtol=0)


def test_state_dict_round_trip_with_mask(device):
    a = VariationalConv2d(2, 4, 3).to(device)
    a.set_mask((torch.rand_like(a.weight_mu) > 0.3).float())
    b = VariationalConv2d(2, 4, 3).to(device)
    b.load_state_dict(a.state_dict())
    assert b.weight_mask is not None and a.weight_mask is not None
    torch.testing.assert_close(b.weight_mask, a.weight_mask)
    x = torch.randn(2, 2, 5, 5, device=device)
    torch.testing.assert_close(a(x, sample=False), b(x, sample=False))
    # and a dense state dict clears the mask again
    b.load_state_dict(VariationalConv2d(2, 4, 3).state_dict())
    assert b.weight_mask is None


def test_dtype_follows_module(device):
    layer = VariationalLinear(3, 2).to(device, torch.float64)
    out = layer(torch.randn(4, 3, device=device, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.device.type == torch.device(device).type
    batched = layer(torch.randn(2, 5, 3, device=device, dtype=torch.float64))
    assert batched.shape == (2, 5, 2)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="parametrization"):
        VariationalLinear(2, 2, parametrization="exp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prior_sigma"):
        VariationalLinear(2, 2, prior_sigma=0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        VariationalLinear(3, 2)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="channels"):
        VariationalConv2d(3, 2, 3)(torch.randn(1, 2, 5, 5))
    with pytest.raises(TypeError, match="x"):
        VariationalLinear(3, 2)(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        VariationalLinear(3, 2).set_mask(torch.ones(3, 2))
    with pytest.raises(ValueError, match="no variational layers"):
        kl_divergence(nn.Linear(2, 2))


def test_negative_elbo_is_ce_plus_weighted_kl(device):
    logits = torch.randn(8, 5, device=device)
    y = torch.randint(0, 5, (8,), device=device)
    kl = torch.tensor(37.0, device=device)
    got = negative_elbo(logits, y, kl, n_data=100, kl_weight=0.5)
    torch.testing.assert_close(got, F.cross_entropy(logits, y) + 0.5 * 37.0 / 100)
    with pytest.raises(ValueError, match="n_data"):
        negative_elbo(logits, y, kl, n_data=0)
    with pytest.raises(ValueError, match="targets"):
        negative_elbo(logits, y[:3], kl, n_data=10)
    with pytest.raises(ValueError, match="NaN"):
        negative_elbo(logits, y, torch.tensor(float("nan"), device=device), n_data=10)


def test_predictive_averages_softmax_and_collapses_without_noise(device):
    torch.manual_seed(0)
    model = nn.Sequential(
        VariationalLinear(4, 8, sigma_init=1e-8),
        nn.ReLU(),
        VariationalLinear(8, 3, sigma_init=1e-8),
    ).to(device)
    x = torch.randn(6, 4, device=device)
    probs = predictive(model, x, n_samples=5)
    torch.testing.assert_close(probs.sum(1), torch.ones(6, device=device))
    mean_logits = model[2](model[1](model[0](x, sample=False)), sample=False)
    torch.testing.assert_close(probs, mean_logits.softmax(-1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="n_samples"):
        predictive(model, x, n_samples=0)


def _ece_reference(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    conf = probs.max(1)
    pred = probs.argmax(1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return float(total)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), c=st.integers(2, 6), bins=st.integers(1, 20), seed=st.integers(0, 99))
def test_ece_matches_loop_reference(n, c, bins, seed):
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(n, c, generator=g, dtype=torch.float64) * 2).softmax(-1)
    y = torch.randint(0, c, (n,), generator=g)
    ours = float(expected_calibration_error(probs, y, bins))
    ref = _ece_reference(probs.numpy(), y.numpy(), bins)
    assert ours == pytest.approx(ref, abs=1e-12)


def test_ece_extremes(device):
    y = torch.tensor([0, 1, 2, 1], device=device)
    onehot = F.one_hot(y, 3).float()
    assert float(expected_calibration_error(onehot, y)) == 0.0
    wrong = torch.tensor([1, 1, 1, 1], device=device)  # half right, all fully confident
    assert float(expected_calibration_error(F.one_hot(wrong, 3).float(), y)) == pytest.approx(0.5)


def test_flop_counter_counts_training_forward_only(device):
    model = nn.Sequential(VariationalLinear(10, 20), nn.ReLU(), VariationalLinear(20, 3))
    model.to(device)
    counter = TrainingFlopCounter(model)
    x = torch.randn(7, 10, device=device)
    model(x).sum().backward()
    per_fwd = 7 * (4 * 200 + 10 + 80) + 400 + 7 * (4 * 60 + 20 + 12) + 120
    assert counter.forward_flops == per_fwd
    assert counter.training_flops == 3 * per_fwd
    with torch.no_grad():
        model(x)
    model.eval()
    model(x)
    assert counter.forward_flops == per_fwd
    counter.remove()
    model.train()
    model(x)
    assert counter.forward_flops == per_fwd


def test_conv_flops_scale_with_active_weights():
    conv = VariationalConv2d(4, 8, 3, padding=1)
    shape = torch.Size((2, 4, 6, 6))
    dense = conv.forward_flops(shape)
    mask = torch.zeros_like(conv.weight_mu)
    mask.view(-1)[::10] = 1.0
    conv.set_mask(mask)
    sparse = conv.forward_flops(shape)
    locs = 2 * 36
    assert dense - sparse == 4 * locs * (288 - int(mask.sum())) + 2 * (288 - int(mask.sum()))
