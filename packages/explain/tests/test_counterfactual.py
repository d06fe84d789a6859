"""Stability measure, Lipschitz bound, nearest/Wachter counterfactuals and T-Rex."""

from __future__ import annotations

import random
import sys

import pytest
import torch

from torchloom.explain.counterfactual import (
    dice_counterfactuals,
    nearest_counterfactual,
    stability,
    stability_lipschitz_bound,
    trex,
    wachter_counterfactual,
)

W = torch.tensor([1.5, -2.0, 0.5])


def logistic(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x @ W.to(x.dtype) - 0.3)


def test_constant_model_stability_is_its_value() -> None:
    x = torch.randn(7, 3)
    for c in (0.0, 0.3, 1.0):
        r = stability(lambda z, c=c: torch.full((z.shape[0],), c), x, sigma=0.5, k=10)
        torch.testing.assert_close(r, torch.full((7,), c))


def test_estimator_is_consistent_and_lipschitz_bound_holds() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    sigma = 0.4
    a = stability(logistic, x, sigma, k=20_000, generator=g)
    b = stability(logistic, x, sigma, k=20_000, generator=g)
    torch.testing.assert_close(a, b, atol=1e-2, rtol=0)
    # a logistic model is (‖w‖/4)-Lipschitz
    bound = stability_lipschitz_bound(logistic(x), float(W.norm()) / 4, sigma, dim=3)
    assert bool((bound <= a + 1e-3).all())


def test_wachter_and_nearest_counterfactuals_flip_the_class() -> None:
    x = torch.tensor([[-1.0, 1.0, 0.0], [-2.0, 0.5, -1.0]])
    assert bool((logistic(x) < 0.5).all())
    cf, valid = wachter_counterfactual(logistic, x, steps=150)
    assert bool(valid.all()) and bool((logistic(cf) > 0.5).all())
    near, valid_n = nearest_counterfactual(logistic, x, margin=0.01, steps=150)
    p = logistic(near)
    assert bool(valid_n.all()) and bool((p > 0.51).all()) and bool((p < 0.52).all())
    assert bool(((near - x).norm(dim=1) <= (cf - x).norm(dim=1) + 1e-6).all())


def test_log_prediction_loss_reaches_saturated_queries() -> None:
    # a steep logistic model: m(x) ~ 1e-20 at the query, so (m - 1)^2 has no usable gradient
    def steep(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20 * (x @ W.to(x.dtype) - 0.3))

    x = torch.tensor([[-1.0, 1.0, 0.0]])
    assert float(steep(x)) < 1e-15
    _, valid_sq = wachter_counterfactual(steep, x, steps=100, max_doublings=3)
    cf, valid_log = wachter_counterfactual(
        steep, x, steps=100, max_doublings=3, prediction_loss="log"
    )
    assert not bool(valid_sq.any())
    assert bool(valid_log.all()) and float(steep(cf)) > 0.5
    with pytest.raises(ValueError, match="prediction_loss"):
        wachter_counterfactual(steep, x, prediction_loss="hinge")


def test_trex_meets_tau_on_its_own_estimator() -> None:
    x = torch.tensor([[-1.0, 1.0, 0.0], [-2.0, 0.5, -1.0]])
    near, _ = nearest_counterfactual(logistic, x, steps=150)
    g = torch.Generator().manual_seed(1)
    start = stability(logistic, near, 0.3, k=64, generator=torch.Generator().manual_seed(1))
    res = trex(logistic, near, tau=0.8, sigma=0.3, k=64, generator=g)
    assert bool(res.reached.all()) and bool((res.stability >= 0.8).all())
    assert bool((start < 0.8).all()) and bool((res.steps > 0).all())
    # an already-stable point is not moved
    far = torch.tensor([[3.0, -3.0, 0.0]])
    res2 = trex(logistic, far, tau=0.8, sigma=0.3, k=64)
    assert torch.equal(res2.x, far) and int(res2.steps[0]) == 0


def test_bad_input() -> None:
    x = torch.randn(3, 3)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        stability(logistic, x, sigma=0.0)
    with pytest.raises(ValueError, match=r"x must have 2 dimensions \(B, D\)"):
        stability(logistic, torch.randn(3), sigma=0.1)
    with pytest.raises(ValueError, match="target-class probabilities"):
        stability(lambda z: torch.sigmoid(z), x, sigma=0.1)
    with pytest.raises(ValueError, match="tau must lie in"):
        trex(logistic, x, tau=1.5, sigma=0.1)


def test_dice_counterfactuals_flip_the_class_and_are_seeded() -> None:
    pytest.importorskip("dice_ml")
    import numpy as np

    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(200, 3, generator=g)
    queries = x_train[logistic(x_train) < 0.3][:3]
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    py_before = random.getstate()
    a = dice_counterfactuals(logistic, x_train, queries, method="genetic", seed=3)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert random.getstate() == py_before
    assert a.found.shape == (3,) and a.x.shape == queries.shape and a.seconds > 0
    validity = float((a.found & (logistic(a.x) > 0.5)).float().mean())
    assert 0.0 <= validity <= 1.0
    assert bool(a.found.any())
    # every counterfactual DiCE returns is of the opposite class on the model it was given
    assert bool((logistic(a.x[a.found]) > 0.5).all())
    torch.testing.assert_close(a.x[~a.found], queries[~a.found])
    b = dice_counterfactuals(logistic, x_train, queries, method="genetic", seed=3)
    torch.testing.assert_close(a.x, b.x)


def test_dice_counterfactuals_bad_input_and_missing_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="queries"):
        dice_counterfactuals(logistic, x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="method"):
        dice_counterfactuals(logistic, x, x[:2], method="gradient")
    monkeypatch.setitem(sys.modules, "dice_ml", None)
    with pytest.raises(ImportError):
        dice_counterfactuals(logistic, x, x[:2])
