"""The DARTS supernet: parameter split, shapes, weight overrides, gradients."""

from __future__ import annotations

import pytest
import torch

from torchloom.nas.space import Mixture, SoftmaxMixing
from torchloom.nas.supernet import Supernet, default_reductions

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


def small(**kw: object) -> Supernet:
    args: dict[str, object] = {"C": 4, "layers": 3, "steps": 2, "ops": OPS}
    args.update(kw)
    return Supernet(**args)  # type: ignore[arg-type]


def test_arch_and_weight_parameters_partition() -> None:
    m = small()
    arch = {id(p) for p in m.arch_parameters()}
    weights = {id(p) for p in m.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in m.parameters()}
    assert [p.shape for p in m.arch_parameters()] == [(5, 4), (5, 4)]


@pytest.mark.parametrize(("in_channels", "size"), [(1, 8), (3, 32)])
def test_shapes_digits_and_cifar(in_channels: int, size: int, device: torch.device) -> None:
    m = small(in_channels=in_channels).to(device)
    y = m(torch.randn(2, in_channels, size, size, device=device))
    assert y.shape == (2, 10) and y.device.type == device.type


def test_default_reductions() -> None:
    assert default_reductions(8) == (2, 5)
    assert default_reductions(3) == (1, 2)
    assert small(reductions=()).reductions == ()


def test_default_equals_explicit_softmax_weights() -> None:
    m = small().double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    w = {k: a.softmax(-1) for k, a in m.alphas().items()}
    torch.testing.assert_close(m(x), m(x, weights=w))
    # overriding one cell type changes the output
    w2 = {"normal": torch.full_like(w["normal"], 0.25)}
    assert not torch.allclose(m(x), m(x, weights=w2))


def test_arch_gradient_flows() -> None:
    m = small()
    loss = m(torch.randn(4, 1, 8, 8)).logsumexp(-1).mean()
    loss.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in m.arch_parameters())


def test_custom_mixing_callable() -> None:
    calls: list[tuple[int, ...]] = []

    def sigmoid_rule(logits: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(logits.shape))
        return torch.sigmoid(logits)

    m = small(mixing=sigmoid_rule).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    out = m(x)
    assert calls == [(5, 4), (5, 4)]
    w = {k: Mixture(torch.sigmoid(a)) for k, a in m.alphas().items()}
    torch.testing.assert_close(out, m(x, weights=w))
    m.mixing = SoftmaxMixing()
    assert not torch.allclose(out, m(x))


def test_state_dict_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = small(generator=g, alpha_init_std=1.0), small()
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(a(x), b(x))


def test_bad_inputs() -> None:
    m = small()
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        m(torch.randn(1, 8, 8))
    with pytest.raises(ValueError, match="x must have 1 channels"):
        m(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="reductions"):
        small(reductions=(5,))
    with pytest.raises(ValueError, match="unknown op"):
        small(ops=("none", "bogus"))
    with pytest.raises(ValueError, match="steps"):
        small(steps=0)
