"""The generated irregular data set behind the neural-de.stable-sde and neural-de.ncde recipes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from torchloom.core.recipes import RunContext
from torchloom.neural_de.recipes.irregular import (
    _authors_batch_size,
    _drop_stats,
    _fit_epochs,
    irregular_oscillators,
    irregular_spirals,
)


@pytest.mark.parametrize("missing", [0.0, 0.3, 0.7])
def test_missing_rate_and_first_observation(missing: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x, t, y = irregular_spirals(400, 20, missing, gen)
    assert x.shape == (400, 20, 2) and t.shape == (20,) and y.shape == (400,)
    nan = torch.isnan(x)
    assert not nan[:, 0].any()
    rate = float(nan[:, 1:].float().mean())
    assert abs(rate - missing) < 0.02
    assert set(y.tolist()) == {0, 1}


def test_classes_rotate_in_opposite_directions() -> None:
    gen = torch.Generator().manual_seed(1)
    x, _, y = irregular_spirals(200, 30, 0.0, gen, noise=0.0)
    angle = torch.atan2(x[..., 1], x[..., 0])
    turn = torch.remainder(torch.diff(angle, dim=1) + torch.pi, 2 * torch.pi) - torch.pi
    direction = torch.sign(turn.sum(1))
    assert bool((direction == (2 * y - 1).float()).all())


@pytest.mark.parametrize("missing", [0.3, 0.7])
def test_drop_whole_time_points(missing: float) -> None:
    """The authors' protocol: int(N·p) whole time points removed per series; masks nested."""
    x, _, _ = irregular_spirals(50, 20, missing, torch.Generator().manual_seed(0), drop="times")
    nan = torch.isnan(x)
    assert bool((nan[..., 0] == nan[..., 1]).all())  # all channels of a time go together
    assert bool((nan[..., 0].sum(1) == int(20 * missing)).all())
    less, _, _ = irregular_spirals(50, 20, 0.3, torch.Generator().manual_seed(0), drop="times")
    assert bool((torch.isnan(less) <= nan).all())  # the 30% mask is inside every larger one
    full, _, _ = irregular_spirals(50, 20, 0.0, torch.Generator().manual_seed(0), drop="times")
    torch.testing.assert_close(x[~nan], full[~nan])  # same series underneath
    with pytest.raises(ValueError, match="drop"):
        irregular_spirals(5, 5, 0.1, torch.Generator(), drop="rows")


@pytest.mark.parametrize("missing", [0.0, 0.3, 0.7])
def test_oscillators_drop_whole_time_points_nested(missing: float) -> None:
    x, t, y = irregular_oscillators(60, 20, missing, torch.Generator().manual_seed(0), classes=5)
    assert x.shape == (60, 20, 2) and t.shape == (20,) and y.shape == (60,)
    assert set(y.tolist()) <= set(range(5))
    nan = torch.isnan(x)
    assert bool((nan[..., 0] == nan[..., 1]).all())
    assert bool((nan[..., 0].sum(1) == int(20 * missing)).all())
    full, _, y_full = irregular_oscillators(
        60, 20, 0.0, torch.Generator().manual_seed(0), classes=5
    )
    torch.testing.assert_close(x[~nan], full[~nan])  # same series underneath every rate
    assert torch.equal(y, y_full)
    less, _, _ = irregular_oscillators(60, 20, 0.2, torch.Generator().manual_seed(0), classes=5)
    if missing >= 0.2:
        assert bool((torch.isnan(less) <= nan).all())


def test_oscillator_class_is_the_number_of_turns() -> None:
    """Noise-free: the unwrapped phase advances ±2π(1 + k/2) over [0, 1] for class k."""
    x, _, y = irregular_oscillators(300, 200, 0.0, torch.Generator().manual_seed(2), noise=0.0)
    angle = torch.atan2(x[..., 1], x[..., 0])
    step = torch.remainder(torch.diff(angle, dim=1) + torch.pi, 2 * torch.pi) - torch.pi
    turns = step.sum(1).abs() / (2 * torch.pi)
    torch.testing.assert_close(turns, 1.0 + 0.5 * y.float(), atol=1e-3, rtol=0)
    assert set(y.tolist()) == {0, 1, 2, 3}
    radius = x.norm(dim=-1)
    assert bool((radius[:, 1:] <= radius[:, :-1] + 1e-6).all())  # damped, never growing


def test_oscillators_bad_input() -> None:
    with pytest.raises(ValueError, match="classes"):
        irregular_oscillators(5, 5, 0.1, torch.Generator(), classes=1)
    with pytest.raises(ValueError, match="missing"):
        irregular_oscillators(5, 5, 1.0, torch.Generator())


def test_drop_standard_error_matches_simulated_binomial_accuracies() -> None:
    """The stable-sde recipe's binomial variance of ``stable drop − naive drop`` equals the
    spread of that difference when every test accuracy is an independent binomial draw."""
    names = ["langevin", "linear_noise", "geometric", "naive", "ncde"]
    p_first = dict(zip(names, [0.95, 0.9, 0.85, 0.9, 0.8], strict=True))
    p_last = dict(zip(names, [0.6, 0.5, 0.55, 0.65, 0.4], strict=True))
    n_test, reps = 200, 4000
    gen = torch.Generator().manual_seed(0)

    def draw(p: float) -> Tensor:
        return torch.binomial(torch.full((reps,), float(n_test)), torch.tensor(p), generator=gen)

    first = {k: draw(p) / n_test for k, p in p_first.items()}
    last = {k: draw(p) / n_test for k, p in p_last.items()}
    diffs = torch.stack(
        [
            torch.tensor(
                _drop_stats(
                    [
                        {
                            "missing": 0.0,
                            "n_test": n_test,
                            **{k: float(first[k][i]) for k in names},
                        },
                        {"missing": 0.7, "n_test": n_test, **{k: float(last[k][i]) for k in names}},
                    ],
                    names,
                )["stable_minus_naive_drop"]
            )
            for i in range(reps)
        ]
    )
    rows = [
        {"missing": 0.0, "n_test": n_test, **p_first},
        {"missing": 0.7, "n_test": n_test, **p_last},
    ]
    stats = _drop_stats(rows, names)
    expected = sum(p_first[k] - p_last[k] for k in names[:3]) / 3 - (
        p_first["naive"] - p_last["naive"]
    )
    assert abs(float(diffs.mean()) - expected) < 0.003
    assert abs(float(diffs.var()) / stats["stable_minus_naive_drop_var"] - 1) < 0.1


@pytest.mark.parametrize("n", [10, 31, 32, 33, 64, 100, 255, 256, 257, 1024, 5000])
def test_batch_size_rule_matches_the_authors_loop(n: int) -> None:
    # torch-ists model_run.py: for i in 4..7, stop at the first 2**i > n/2, else take 2**i
    expected = 2**4
    for i in range(4, 8):
        if 2**i > n / 2:
            break
        expected = 2**i
    assert _authors_batch_size(n) == expected


def _toy_problem(seed: int) -> tuple[tuple[Tensor, Tensor], ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    # validation labels flipped: every step that fits the training data raises the val loss
    return (x[:80], y[:80]), (x[80:100], 1 - y[80:100]), (x[100:], y[100:])


def _linear_fwd(m: nn.Module, xb: Tensor) -> Tensor:
    return m(xb)


def test_fit_epochs_early_stops_and_restores_the_best_validation_parameters() -> None:
    ctx = RunContext(quick=True, show_progress=False)
    train, val, test = _toy_problem(0)
    torch.manual_seed(0)
    one = nn.Linear(3, 2)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    torch.testing.assert_close(one.weight, model.weight)
    out_one = _fit_epochs(ctx, "one", one, _linear_fwd, train, val, test, 1, 0.05, seed=3)
    out = _fit_epochs(ctx, "all", model, _linear_fwd, train, val, test, 100, 0.05, seed=3)
    # the val loss only grows after the first epoch: stop after epoch 21 (the authors'
    # e > 20 and patience > 10), with the first epoch's parameters
    assert out["epochs"] == 22.0
    assert out["val_loss"] == pytest.approx(out_one["val_loss"])
    torch.testing.assert_close(model.weight, one.weight)
    torch.testing.assert_close(model.bias, one.bias)


def test_fit_epochs_trains_to_max_epochs_while_validation_improves() -> None:
    ctx = RunContext(quick=True, show_progress=False)
    train, val, test = _toy_problem(1)
    val = (val[0], 1 - val[1])  # consistent labels: the val loss keeps falling
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    out = _fit_epochs(ctx, "fit", model, _linear_fwd, train, val, test, 15, 0.05, seed=0)
    assert out["epochs"] == 15.0
    with torch.no_grad():  # the reported figures are those of the returned parameters
        val_loss = float(nn.functional.cross_entropy(model(val[0]), val[1]))
        accuracy = float((model(test[0]).argmax(1) == test[1]).float().mean())
    assert val_loss == pytest.approx(out["val_loss"])
    assert accuracy == pytest.approx(out["accuracy"])
    torch.manual_seed(0)
    untrained = nn.Linear(3, 2)
    with torch.no_grad():
        assert val_loss < float(nn.functional.cross_entropy(untrained(val[0]), val[1]))
