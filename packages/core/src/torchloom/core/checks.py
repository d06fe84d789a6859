"""Input validation shared by every package: clear ``TypeError``/``ValueError`` naming the argument.

Checks are plain ``raise`` statements (never ``assert``) so they survive ``python -O``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_finite",
    "check_floating",
    "check_int",
    "check_ndim",
    "check_positive",
    "check_probability",
    "check_same_shape",
    "check_shape",
    "check_tensor",
]


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_floating(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor."""
    t = check_tensor(x, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def check_ndim(x: object, name: str, ndim: int | Sequence[int], layout: str = "") -> torch.Tensor:
    """Return ``x`` if its number of dimensions is ``ndim`` (or one of them)."""
    t = check_tensor(x, name)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if t.dim() not in allowed:
        want = " or ".join(str(a) for a in allowed)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have {want} dimensions{hint}, got shape {tuple(t.shape)}")
    return t


def check_shape(x: object, name: str, shape: Sequence[int | None]) -> torch.Tensor:
    """Return ``x`` if its shape matches ``shape`` (``None`` matches any size)."""
    t = check_tensor(x, name)
    ok = t.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have identical shapes (no silent broadcasting)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` if every entry is finite; otherwise say how many are NaN/Inf."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} Inf values")
    return x


def check_positive(value: float, name: str, strict: bool = True) -> float:
    """Return ``value`` if it is a finite number > 0 (``>= 0`` when ``strict=False``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if strict else v < 0):
        rel = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {rel}, got {value}")
    return v


def check_probability(value: float, name: str) -> float:
    """Return ``value`` if it lies in [0, 1]."""
    v = check_positive(value, name, strict=False)
    if v > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return v


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
