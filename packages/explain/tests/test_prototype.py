"""Prototype network: R1/R2 by hand, logits from negative distances, explanations, errors."""

from __future__ import annotations

import pytest
import torch

from torchloom.explain.prototype import (
    PrototypeLoss,
    PrototypeNetwork,
    prototype_regularizers,
)


def test_regularizers_match_hand_computation() -> None:
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    r1, r2 = prototype_regularizers(z, p)
    # prototype 0 nearest encoding: (0,0) at 1; prototype 1: (0,4) at 36 -> R1 = 18.5
    assert float(r1) == pytest.approx((1 + 36) / 2)
    # encodings: (0,0)->p0 1; (3,0)->p0 4; (0,4)->p0 17 vs p1 36 -> 17 -> R2 = 22/3
    assert float(r2) == pytest.approx((1 + 4 + 17) / 3)


def test_logits_are_linear_in_negative_squared_distances(device: torch.device) -> None:
    m = PrototypeNetwork(3, n_prototypes=5, image_size=8, code=6).to(device)
    x = torch.rand(4, 1, 8, 8, device=device)
    z = m.encode(x)
    d = ((z[:, None, :] - m.prototypes[None]) ** 2).sum(-1)
    torch.testing.assert_close(m.distances(z), d, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        m(x), -d @ m.classifier.weight.T + m.classifier.bias, rtol=1e-4, atol=1e-5
    )


def test_explanation_lists_nearest_prototypes() -> None:
    m = PrototypeNetwork(3, n_prototypes=6, image_size=8, code=4)
    x = torch.rand(5, 1, 8, 8)
    ex = m.explain(x, top=2)
    d = m.distances(m.encode(x)).detach()
    assert torch.equal(ex.prototype[:, 0], d.argmin(1))
    assert bool((ex.distance[:, 0] <= ex.distance[:, 1]).all())
    assert torch.equal(ex.prediction, m(x).argmax(1))
    assert m.decode_prototypes().shape == (6, 1, 8, 8)


def test_loss_parts_and_gradients_reach_prototypes() -> None:
    m = PrototypeNetwork(2, n_prototypes=3, image_size=8, code=4)
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1])
    total, parts = PrototypeLoss(1.0, 1.0, 1.0, 1.0)(m, x, y)
    assert float(total.detach()) == pytest.approx(sum(parts.values()), rel=1e-5)
    total.backward()
    assert m.prototypes.grad is not None and float(m.prototypes.grad.abs().sum()) > 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="n_prototypes must be an int >= 1"):
        PrototypeNetwork(3, n_prototypes=0)
    with pytest.raises(ValueError, match="image_size must be divisible by 4"):
        PrototypeNetwork(3, image_size=10)
    m = PrototypeNetwork(3)
    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(B, C, H, W\)"):
        m(torch.rand(2, 64))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        m(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="lam_r1 must be finite"):
        PrototypeLoss(lam_r1=-1.0)
