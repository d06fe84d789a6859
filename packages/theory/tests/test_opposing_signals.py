"""Per-example loss tracking, opposing-group detection, sharpness and the toy model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchloom.theory.opposing_signals import (
    LossTracker,
    TwoLayerLinear,
    find_opposing_groups,
    gradient_cosine,
    group_loss_correlation,
    opposing_signals_toy,
    per_example_loss,
    sharpness,
    top_changing_examples,
)

F64 = torch.float64


def _flat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str):  # type: ignore[no-untyped-def]
    params = [p for p in model.parameters()]
    shapes = [p.shape for p in params]

    def f(theta: torch.Tensor) -> torch.Tensor:
        i, ps = 0, []
        for s in shapes:
            n = math.prod(s)
            ps.append(theta[i : i + n].reshape(s))
            i += n
        h = torch.tanh(x @ ps[0].T + ps[1])
        out = h @ ps[2].T + ps[3]
        if kind == "mse":
            return 0.5 * ((out[:, 0] - y) ** 2).mean()
        return nn.functional.cross_entropy(out, y)

    return f, torch.cat([p.detach().reshape(-1) for p in params])


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_sharpness_matches_dense_hessian(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    out = 1 if kind == "mse" else 3
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, out)).to(F64)
    x = torch.randn(12, 3, generator=g, dtype=F64)
    y = torch.randn(12, generator=g, dtype=F64) if kind == "mse" else torch.randint(0, 3, (12,))
    f, theta = _flat_loss(model, x, y, kind)
    h = torch.autograd.functional.hessian(f, theta)
    evals = torch.linalg.eigvalsh(h)
    top = float(evals[evals.abs().argmax()])
    est = sharpness(model, x, y, kind, iters=400, tol=1e-12, generator=g)  # type: ignore[arg-type]
    assert est == pytest.approx(top, rel=1e-3)


def test_per_example_loss_and_tracker() -> None:
    g = torch.Generator().manual_seed(1)
    model = nn.Linear(4, 3)
    x = torch.randn(7, 4, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    ref = nn.functional.cross_entropy(model(x), y, reduction="none").detach()
    torch.testing.assert_close(per_example_loss(model, x, y), ref)
    reg = nn.Linear(4, 1)
    t = torch.randn(7, generator=g)
    torch.testing.assert_close(
        per_example_loss(reg, x, t, "mse"), (0.5 * (reg(x)[:, 0] - t) ** 2).detach()
    )
    tr = LossTracker(model, x, y)
    with pytest.raises(RuntimeError, match="record"):
        _ = tr.losses
    for s in range(3):
        tr.record(10 * s)
        with torch.no_grad():
            model.weight.mul_(0.5)
    assert tr.losses.shape == (3, 7) and tr.steps == [0, 10, 20]
    with pytest.raises(ValueError, match="batch size"):
        LossTracker(model, x, y[:3])
    with pytest.raises(ValueError, match="loss must"):
        per_example_loss(model, x, y, "hinge")  # type: ignore[arg-type]


def test_top_changing_and_correlation_against_numpy() -> None:
    g = torch.Generator().manual_seed(2)
    losses = torch.rand(9, 20, generator=g, dtype=F64)
    idx = top_changing_examples(losses, 5)
    tv = np.abs(np.diff(losses.numpy(), axis=0)).sum(0)
    assert idx.tolist() == list(np.argsort(-tv)[:5])
    a, b = torch.tensor([0, 3, 5]), torch.tensor([1, 2])
    da = np.diff(losses.numpy()[:, [0, 3, 5]].mean(1))
    db = np.diff(losses.numpy()[:, [1, 2]].mean(1))
    assert group_loss_correlation(losses, a, b) == pytest.approx(np.corrcoef(da, db)[0, 1])
    with pytest.raises(ValueError, match="T >= 3"):
        top_changing_examples(losses[:2], 3)
    with pytest.raises(ValueError, match="k must"):
        top_changing_examples(losses, 21)


def test_find_opposing_groups_recovers_planted_groups() -> None:
    g = torch.Generator().manual_seed(3)
    t = torch.arange(60, dtype=F64)
    osc = torch.sin(0.7 * t) * torch.linspace(0.1, 2.0, 60, dtype=F64)
    losses = 1.0 + 0.01 * torch.rand(60, 50, generator=g, dtype=F64)
    a_true, b_true = torch.arange(0, 6), torch.arange(10, 15)
    losses[:, a_true] += osc[:, None] * (1 + torch.rand(6, generator=g, dtype=F64))
    losses[:, b_true] -= osc[:, None] * (1 + torch.rand(5, generator=g, dtype=F64))
    res = find_opposing_groups(losses, 11)
    found = {frozenset(res.group_a.tolist()), frozenset(res.group_b.tolist())}
    assert found == {frozenset(a_true.tolist()), frozenset(b_true.tolist())}
    assert res.correlation < -0.99
    # Co-moving examples do not split.
    with pytest.raises(ValueError, match="two groups"):
        find_opposing_groups(1.0 + osc[:, None].abs().repeat(1, 8) * torch.arange(1, 9), 4)


def test_gradient_cosine_linear_regression() -> None:
    g = torch.Generator().manual_seed(4)
    model = nn.Linear(3, 1, bias=False).to(F64)
    xa, xb = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    ya, yb = torch.randn(5, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64)
    w = model.weight.detach()[0]
    ga = ((xa @ w - ya)[:, None] * xa).mean(0)
    gb = ((xb @ w - yb)[:, None] * xb).mean(0)
    ref = float(ga @ gb / (ga.norm() * gb.norm()))
    assert gradient_cosine(model, xa, ya, xb, yb, "mse") == pytest.approx(ref)
    # Same features, opposite labels at w = 0: exactly opposing gradients.
    with torch.no_grad():
        model.weight.zero_()
    assert gradient_cosine(model, xa, ya, xa, -ya, "mse") == pytest.approx(-1.0)


def test_toy_data_and_two_layer_linear() -> None:
    g = torch.Generator().manual_seed(5)
    toy = opposing_signals_toy(400, 6, alpha=5.0, outlier_fraction=0.2, generator=g)
    assert toy.x.shape == (400, 7)
    out = toy.x[:, -1] != 0
    assert bool((toy.x[out, -1] == 5.0).all())
    assert bool(((toy.group > 0) == out).all())
    assert bool((toy.y[toy.group == 1] == 1).all()) and bool((toy.y[toy.group == 2] == -1).all())
    net = TwoLayerLinear(7, 9, generator=g)
    torch.testing.assert_close(net(toy.x), toy.x @ net.effective_weights())
    with pytest.raises(ValueError, match="outlier_fraction"):
        opposing_signals_toy(10, outlier_fraction=1.5)
    with pytest.raises(ValueError, match="x must"):
        net(torch.randn(2, 3))
