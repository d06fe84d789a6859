"""The generated irregular data set behind the neural-de.stable-sde and neural-de.ncde recipes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from torchloom.neural_de.recipes.irregular import _drop_stats, irregular_oscillators, irregular_spirals


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
