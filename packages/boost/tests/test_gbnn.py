"""GB-NN: merged network == boosted sum, F0 minimises the loss, residuals are −∂L/∂F."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from torchloom.boost.gbnn import GBNNClassifier, GBNNRegressor


@pytest.fixture(scope="module")
def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g, dtype=torch.float64) * 4 - 2
    y = (
        torch.sin(x[:, 0])
        + 0.5 * x[:, 1] ** 2
        - x[:, 2]
        + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)
    )
    return x, y


@pytest.fixture(scope="module")
def classification() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(240, 2, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # 3 classes, unbalanced
    return x, y


@pytest.fixture(scope="module")
def reg_model(regression: tuple[torch.Tensor, torch.Tensor]) -> GBNNRegressor:
    x, y = regression
    return GBNNRegressor(n_steps=12, units_per_step=3, epochs=30).fit(x, y)


@pytest.fixture(scope="module")
def clf_model(classification: tuple[torch.Tensor, torch.Tensor]) -> GBNNClassifier:
    x, y = classification
    return GBNNClassifier(n_steps=10, units_per_step=2, epochs=30, activation="tanh").fit(x, y)


def test_merged_network_equals_boosted_sum(
    reg_model: GBNNRegressor,
    clf_model: GBNNClassifier,
    regression: tuple[torch.Tensor, torch.Tensor],
    classification: tuple[torch.Tensor, torch.Tensor],
) -> None:
    for model, (x, _) in ((reg_model, regression), (clf_model, classification)):
        staged = model.staged_decision_function(x)
        torch.testing.assert_close(model.decision_function(x), staged[-1], rtol=0, atol=1e-12)
        assert model.n_hidden_ == model.n_steps * model.units_per_step


def test_switch_off_equals_truncated_boosting(
    reg_model: GBNNRegressor, regression: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = regression
    staged = reg_model.staged_decision_function(x)
    j = reg_model.units_per_step
    for drop_steps in (1, 4):
        cut = reg_model.switch_off(drop_steps * j)
        torch.testing.assert_close(
            cut.decision_function(x), staged[-1 - drop_steps], rtol=0, atol=1e-12
        )
    assert reg_model.n_hidden_ == 36  # the original is untouched


def test_training_loss_never_increases(reg_model: GBNNRegressor, clf_model: GBNNClassifier) -> None:
    # with the optimal step ρ and shrinkage ν <= 1, convexity gives L(F + νρh) <= L(F)
    for m in (reg_model, clf_model):
        losses = np.array(m.train_loss_)
        assert np.all(np.diff(losses) <= 1e-10)
        assert losses[-1] < 0.5 * losses[0]


def test_f0_minimises_the_loss(
    reg_model: GBNNRegressor,
    clf_model: GBNNClassifier,
    regression: tuple[torch.Tensor, torch.Tensor],
    classification: tuple[torch.Tensor, torch.Tensor],
) -> None:
    _, y = regression
    res = minimize(lambda c: float(((y.numpy() - c[0]) ** 2).sum()), x0=[0.0])
    assert abs(float(reg_model.f0_[0]) - res.x[0]) < 1e-5
    _, yc = classification
    onehot = torch.nn.functional.one_hot(yc, 3).double()

    def ce(c: np.ndarray) -> float:
        f = torch.tensor(c).expand(len(yc), 3)
        return float(-(onehot * torch.log_softmax(f, 1)).sum())

    best = minimize(ce, x0=np.zeros(3)).fun
    assert ce(clf_model.f0_.numpy()) <= best + 1e-6


def test_pseudo_residuals_are_negative_gradients(
    reg_model: GBNNRegressor, clf_model: GBNNClassifier
) -> None:
    g = torch.Generator().manual_seed(3)
    f = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y_clf = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 2, 1, 0, 1]), 3).double()
    y_reg = torch.randn(7, 3, generator=g, dtype=torch.float64)
    for m, y in ((clf_model, y_clf), (reg_model, y_reg)):
        (grad,) = torch.autograd.grad(m._loss(f, y), f)
        torch.testing.assert_close(m.pseudo_residuals(f.detach(), y), -grad)


def test_fits_well(
    reg_model: GBNNRegressor,
    clf_model: GBNNClassifier,
    regression: tuple[torch.Tensor, torch.Tensor],
    classification: tuple[torch.Tensor, torch.Tensor],
) -> None:
    assert reg_model.score(*regression) > 0.9
    assert clf_model.score(*classification) > 0.9
    p = clf_model.predict_proba(classification[0])
    torch.testing.assert_close(p.sum(1), torch.ones(len(p), dtype=p.dtype))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="units_per_step must be an int >= 1"):
        GBNNRegressor(units_per_step=0)
    with pytest.raises(ValueError, match="n_steps must be an int >= 1"):
        GBNNClassifier(n_steps=0)
    with pytest.raises(ValueError, match="subsample must lie in"):
        GBNNRegressor(subsample=1.5)
    with pytest.raises(ValueError, match="integer class labels"):
        GBNNClassifier(n_steps=1).fit(torch.zeros(4, 2), torch.tensor([0.5, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="X and y must have the same length"):
        GBNNRegressor(n_steps=1).fit(torch.zeros(4, 2), torch.zeros(5))
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\)"):
        GBNNRegressor(n_steps=1).fit(torch.zeros(4), torch.zeros(4))
    m = GBNNRegressor(n_steps=1, epochs=1).fit(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="X must have 2 features"):
        m.predict(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="n_last must be <"):
        m.switch_off(2)
