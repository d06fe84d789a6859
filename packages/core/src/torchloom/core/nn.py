"""Small building blocks that several packages share (so that no package re-writes them)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

__all__ = ["mlp"]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A fully connected network with ``activation`` between (not after) the linear layers.

    Args:
        sizes: layer widths, input first (at least two).
        activation: the activation module class, instantiated once per hidden layer.

    Returns:
        ``nn.Sequential`` mapping ``(..., sizes[0])`` to ``(..., sizes[-1])``.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"sizes must be at least 2 positive integers, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
