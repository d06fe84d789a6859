"""Validation helpers raise with the argument's name and the received value."""

from __future__ import annotations

import math

import pytest
import torch

from torchloom.core import checks


def test_messages_name_argument_and_value() -> None:
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        checks.check_tensor([1], "x")
    with pytest.raises(
        ValueError, match=r"x must have 3 or 4 dimensions \(B, C, H, W\), got shape"
    ):
        checks.check_ndim(torch.zeros(2), "x", (3, 4), "(B, C, H, W)")
    with pytest.raises(ValueError, match=r"w must have shape \(\*, 3\), got \(2, 2\)"):
        checks.check_shape(torch.zeros(2, 2), "w", (None, 3))
    with pytest.raises(ValueError, match="contains 1 NaN and 1 Inf"):
        checks.check_finite(torch.tensor([math.nan, math.inf, 0.0]), "loss")
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        checks.check_same_shape(torch.zeros(2), torch.zeros(1, 2), "a", "b")
    with pytest.raises(ValueError, match="p must lie in"):
        checks.check_probability(1.5, "p")
    with pytest.raises(TypeError, match="lr must be a number"):
        checks.check_positive(True, "lr")  # type: ignore[arg-type]


def test_passing_values_are_returned() -> None:
    t = torch.zeros(2, 3)
    assert checks.check_shape(t, "t", (2, None)) is t
    assert checks.check_positive(0, "v", strict=False) == 0.0


def test_check_int() -> None:
    assert checks.check_int(3, "n") == 3
    assert checks.check_int(0, "n", minimum=0) == 0
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            checks.check_int(bad, "n")
