"""hypernetize: functional call equals the module, batched equals a loop, gradients reach θ."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchloom.hypernet import HyperTarget, hypernetize


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    )


def test_own_parameters_reproduce_module(device):
    net = _net().to(device)
    target = hypernetize(net)
    x = torch.randn(5, 1, 8, 8, device=device)
    torch.testing.assert_close(target(target.own_parameters(), x), net(x))


def test_functional_call_equals_module_loaded_with_same_weights(device):
    net = _net().to(device)
    target = hypernetize(net, nn.Linear)
    theta = torch.randn(target.num_params, device=device) * 0.1
    other = _net().to(device)
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        for name, value in target.unflatten(theta).items():
            other.get_parameter(name).copy_(value)
    x = torch.randn(3, 1, 8, 8, device=device)
    torch.testing.assert_close(target(theta, x), other(x))


@pytest.mark.parametrize("batched_inputs", [False, True])
def test_batched_equals_loop(batched_inputs):
    net = _net()
    target = hypernetize(net, ["0", "3.weight"])
    theta = target.own_parameters() + 0.05 * torch.randn(4, target.num_params)
    x = torch.randn(4, 6, 1, 8, 8) if batched_inputs else torch.randn(6, 1, 8, 8)
    out = target(theta, x, batched_inputs=batched_inputs)
    loop = torch.stack([target(theta[b], x[b] if batched_inputs else x) for b in range(4)])
    assert out.shape == (4, 6, 10)
    torch.testing.assert_close(out, loop)
    # different weights give different outputs (the batch is not collapsed)
    assert not torch.allclose(out[0], out[1])


def test_gradients_flow_to_hypernetwork():
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    target = hypernetize(net, "2")
    hyper = nn.Linear(1, target.num_params)
    z = torch.rand(4, 1)
    target(hyper(z), torch.randn(7, 3)).square().sum().backward()
    assert hyper.weight.grad is not None and hyper.weight.grad.abs().sum() > 0
    # the unpredicted layer is still an ordinary trainable parameter
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    # the predicted ones are not used, so they get no gradient
    assert net[2].weight.grad is None


def test_gradient_matches_loaded_module_float64():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    target = hypernetize(net)
    theta = target.own_parameters().detach().clone().requires_grad_(True)
    x = torch.randn(6, 3, dtype=torch.float64)
    target(theta, x).sin().sum().backward()
    net(x).sin().sum().backward()
    expected = torch.cat([p.grad.flatten() for p in net.parameters()])
    torch.testing.assert_close(theta.grad, expected)


def test_selection_by_type_and_name():
    net = _net()
    assert hypernetize(net, nn.Conv2d).names == ("0.weight", "0.bias")
    assert hypernetize(net, "3.bias").names == ("3.bias",)
    assert hypernetize(net, ["3", nn.Conv2d]).names == (
        "0.weight",
        "0.bias",
        "3.weight",
        "3.bias",
    )
    t = hypernetize(net, nn.Linear)
    assert t.num_params == 4 * 64 * 10 + 10
    flat = torch.randn(2, t.num_params)
    torch.testing.assert_close(t.flatten(t.unflatten(flat)), flat)


def test_state_dict_round_trip():
    a, b = hypernetize(_net(), nn.Linear), hypernetize(_net(), nn.Linear)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.own_parameters(), b.own_parameters())


def test_bad_input():
    net = _net()
    with pytest.raises(ValueError, match="nope"):
        hypernetize(net, "nope")
    with pytest.raises(ValueError, match="BatchNorm1d"):
        hypernetize(net, nn.BatchNorm1d)
    with pytest.raises(TypeError, match="predict"):
        hypernetize(net, [3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="module"):
        HyperTarget("net")  # type: ignore[arg-type]
    t = hypernetize(net, nn.Linear)
    with pytest.raises(ValueError, match="entries"):
        t(torch.zeros(5), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="batched_inputs"):
        t(torch.zeros(3, t.num_params), torch.zeros(2, 1, 1, 8, 8), batched_inputs=True)
    with pytest.raises(ValueError, match="missing"):
        t.flatten({"3.weight": torch.zeros(10, 256)})
