"""Warning category for everything torchloom emits (tests turn it into an error)."""

from __future__ import annotations

__all__ = ["TorchloomWarning"]


class TorchloomWarning(UserWarning):
    """Raised as a warning by torchloom code: a fallback, a clamp, a non-converged solve."""
