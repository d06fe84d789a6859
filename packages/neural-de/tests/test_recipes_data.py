"""The generated irregular data set behind the neural-de.stable-sde and neural-de.ncde recipes."""

from __future__ import annotations

import pytest
import torch

from torchloom.neural_de.recipes import irregular_spirals


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
