"""Hypothesis strategies for tensors (needs ``hypothesis``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from hypothesis import strategies as st

__all__ = ["shapes", "tensors"]


def shapes(
    min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes with ``min_dims..max_dims`` dimensions of sizes ``min_side..max_side``."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(
        tuple
    )


@st.composite
def tensors(
    draw: st.DrawFn,
    shape: Sequence[int] | st.SearchStrategy[tuple[int, ...]] | None = None,
    dtype: torch.dtype = torch.float64,
    min_value: float = -10.0,
    max_value: float = 10.0,
) -> torch.Tensor:
    """Finite tensors of ``dtype`` with values in ``[min_value, max_value]``.

    ``shape`` may be fixed, a strategy, or ``None`` for :func:`shapes`'s default.
    """
    if shape is None:
        shp = draw(shapes())
    elif isinstance(shape, st.SearchStrategy):
        shp = draw(shape)
    else:
        shp = tuple(shape)
    n = 1
    for s in shp:
        n *= s
    width: Literal[32, 64] = 32 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 64
    values = draw(
        st.lists(
            st.floats(min_value, max_value, allow_nan=False, allow_infinity=False, width=width),
            min_size=n,
            max_size=n,
        )
    )
    return torch.tensor(values, dtype=dtype).reshape(shp)
