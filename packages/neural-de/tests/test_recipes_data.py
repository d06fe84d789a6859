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
