"""MIP: constant-norm encoding, additive output, magnitude invariance, primary-network init."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from torchloom.core.warnings import TorchloomWarning
from torchloom.hypernet import MIPHyperNetwork, hypernetize, mip_encode


def _target(width: int = 64) -> nn.Module:
    return hypernetize(nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_encoding_has_constant_norm(values):
    z = torch.tensor(values, dtype=torch.float64)
    e = mip_encode(z)
    assert e.shape == (2 * len(values),)
    torch.testing.assert_close(e.norm(), torch.tensor(math.sqrt(len(values)), dtype=e.dtype))


def test_encoding_warns_outside_unit_interval():
    with pytest.warns(TorchloomWarning, match=r"\[0, 1\]"):
        mip_encode(torch.tensor([[1.5]]))


def test_theta_is_theta0_when_delta_is_zero():
    target = _target()
    h = MIPHyperNetwork(target, 2)
    with torch.no_grad():
        h.out.weight.zero_()
    z = torch.rand(5, 2)
    torch.testing.assert_close(h(z), h.theta0.expand(5, -1))


def _zero_biases(h: MIPHyperNetwork) -> None:
    with torch.no_grad():
        for m in h.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()


def test_default_is_proportional_mip_is_not():
    torch.manual_seed(0)
    target = _target()
    default = MIPHyperNetwork(target, 1, formulation="default")
    mip = MIPHyperNetwork(target, 1, formulation="mip")
    # the paper's argument: the default init (zero biases) makes the net 1-homogeneous, as
    # constructed — no bias zeroing needed
    _zero_biases(mip)
    z = torch.linspace(0.01, 1.0, 50).unsqueeze(-1)
    n_default = default(z).norm(dim=-1)
    n_mip = mip.delta(z).norm(dim=-1)
    # default: ‖θ(z)‖ ∝ z exactly
    torch.testing.assert_close(n_default / n_default[-1], z.squeeze(-1) / z[-1, 0])
    # MIP: the magnitude of Δθ hardly moves over two decades of z
    assert n_default.max() / n_default.min() > 50
    assert n_mip.max() / n_mip.min() < 3
    # and the full θ = θ₀ + Δθ is even steadier
    n_theta = mip(z).norm(dim=-1)
    assert n_theta.max() / n_theta.min() < 1.1


def test_initial_weights_follow_primary_init():
    torch.manual_seed(0)
    target = _target(width=128)
    h = MIPHyperNetwork(target, 1)
    theta = target.unflatten(h(torch.rand(16, 1)))
    for name, fan_in in (("0.weight", 64), ("2.weight", 128)):
        std = theta[name].std(dim=(1, 2))
        expected = math.sqrt(2.0 / fan_in)  # Kaiming, as the primary network is initialised
        assert torch.all((std - expected).abs() < 0.1 * expected), (name, std, expected)
    # biases: θ₀ = 0 plus a Δθ block of std 1/sqrt(block size), within PyTorch's own
    # bias range ±1/sqrt(fan_in)
    assert theta["0.bias"].abs().mean() < 1.0 / math.sqrt(64)
    # Δθ starts small beside θ₀
    d = h.delta(torch.rand(16, 1))
    assert d.norm(dim=-1).max() < 0.2 * h.theta0.norm()


def test_init_network_trains_to_primary_function():
    """With θ₀ from the module (from_existing) and zero Δθ the hypernetwork is the module."""
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    target = hypernetize(net, nn.Linear)
    h = MIPHyperNetwork.from_existing(target, 1)
    with torch.no_grad():
        h.out.weight.zero_()
    x = torch.randn(4, 5)
    torch.testing.assert_close(target(h(torch.rand(3, 1)), x), net(x).expand(3, -1, -1))


def test_freeze_theta0_and_gradients():
    target = _target()
    h = MIPHyperNetwork(target, 1, freeze_theta0=True)
    assert "theta0" not in dict(h.named_parameters())
    assert "theta0" in h.state_dict()
    loss = target(h(torch.rand(3, 1)), torch.randn(4, 64)).square().mean()
    loss.backward()
    assert h.out.weight.grad is not None and h.out.weight.grad.abs().sum() > 0
    h2 = MIPHyperNetwork(target, 1, freeze_theta0=True)
    h2.load_state_dict(h.state_dict())
    z = torch.rand(2, 1)
    torch.testing.assert_close(h2(z), h(z))


def test_dtype_follows_target():
    target = hypernetize(nn.Linear(3, 2).double())
    h = MIPHyperNetwork(target, 1)
    assert h(torch.rand(2, 1, dtype=torch.float64)).dtype == torch.float64


def test_bad_input():
    target = _target()
    with pytest.raises(ValueError, match="input_dim"):
        MIPHyperNetwork(target, 0)
    with pytest.raises(ValueError, match="formulation"):
        MIPHyperNetwork(target, 1, formulation="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="freeze_theta0"):
        MIPHyperNetwork(target, 1, formulation="default", freeze_theta0=True)
    with pytest.raises(TypeError, match="HyperTarget"):
        MIPHyperNetwork(nn.Linear(2, 2), 1)  # type: ignore[arg-type]
    h = MIPHyperNetwork(target, 2)
    with pytest.raises(ValueError, match="z must be"):
        h(torch.rand(3, 1))
    with pytest.warns(TorchloomWarning):
        h(torch.full((1, 2), -0.5))
