"""Input encoders: static inputs ``(B, *)`` to time-first sequences ``(T, B, *)``.

- :func:`direct_encode` repeats the analog input at every step (the "direct" coding SLTT uses:
  the first layer turns the repeated input into spikes).
- :func:`poisson_encode` fires a Bernoulli spike with probability ``x ∈ [0, 1]`` at every step.
- :func:`latency_encode` fires exactly one spike per input, earlier for larger values
  (``t = round((1 - x)(T - 1))``); inputs at or below ``threshold`` never fire.
"""

from __future__ import annotations

import torch

from torchloom.core import rng
from torchloom.core.checks import check_floating

__all__ = ["direct_encode", "latency_encode", "poisson_encode"]


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return steps


def _check_unit(x: torch.Tensor) -> None:
    if bool(((x < 0) | (x > 1)).any()) or bool(torch.isnan(x).any()):
        lo, hi = float(x.min()), float(x.max())
        raise ValueError(f"x must lie in [0, 1] (rates/intensities), got range [{lo}, {hi}]")


def direct_encode(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Repeat ``x`` ``(B, *)`` over ``steps`` time steps: ``(T, B, *)`` (a view, no copy)."""
    check_floating(x, "x")
    t = _check_steps(steps)
    return x.unsqueeze(0).expand(t, *x.shape)


def poisson_encode(
    x: torch.Tensor, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rate coding: ``s[t] ~ Bernoulli(x)`` independently per step. ``x`` in ``[0, 1]``,
    ``(B, *)`` -> ``(T, B, *)`` spikes of ``x``'s dtype. Randomness from ``generator``."""
    check_floating(x, "x")
    t = _check_steps(steps)
    _check_unit(x)
    u = rng.rand((t, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return (u < x.unsqueeze(0)).to(x.dtype)


def latency_encode(x: torch.Tensor, steps: int, threshold: float = 0.0) -> torch.Tensor:
    """Time-to-first-spike coding: one spike at ``t = round((1 - x)(T - 1))`` for ``x > threshold``.

    ``x`` in ``[0, 1]``, ``(B, *)`` -> ``(T, B, *)``; the brightest inputs fire at ``t = 0``.
    """
    check_floating(x, "x")
    t = _check_steps(steps)
    _check_unit(x)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    when = torch.round((1.0 - x) * (t - 1)).long()
    fires = x > threshold
    time = torch.arange(t, device=x.device).view(t, *([1] * x.dim()))
    return ((time == when.unsqueeze(0)) & fires.unsqueeze(0)).to(x.dtype)
