"""Collocation sampling in boxes: uniform, grid, Hammersley and Sobol points.

Every sampler returns points of shape ``(N, D)`` inside the box ``[lower, upper]`` (``D`` the
length of ``lower``). Low-discrepancy sets come from :mod:`scipy.stats.qmc` (Sobol, scrambled
with a seed drawn from the passed ``torch.Generator``) or from the Hammersley construction
written here (``i / N`` in the first coordinate, base-``p_k`` radical inverses after it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from torchloom.core.checks import check_int

__all__ = ["Method", "box_bounds", "hammersley", "sample_boundary", "sample_box"]

Method = Literal["uniform", "grid", "hammersley", "sobol"]
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def box_bounds(
    lower: float | Sequence[float], upper: float | Sequence[float]
) -> tuple[list[float], list[float]]:
    """Validate a box ``[lower, upper]`` and return its bounds as lists of floats.

    Args:
        lower: lower corner (a number for 1D or one number per dimension).
        upper: upper corner, same length as ``lower``.

    Returns:
        ``(lower, upper)`` as lists of length ``D``.

    Raises:
        ValueError: if the lengths differ, a bound is not finite, or a side has zero or negative
            width.
    """
    lo = [float(lower)] if isinstance(lower, (int, float)) else [float(v) for v in lower]
    hi = [float(upper)] if isinstance(upper, (int, float)) else [float(v) for v in upper]
    if len(lo) != len(hi) or not lo:
        raise ValueError(
            f"lower and upper must have the same non-zero length, got {len(lo)} and {len(hi)}"
        )
    for d, (a, b) in enumerate(zip(lo, hi)):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"domain bounds must be finite, got [{a}, {b}] in dimension {d}")
        if not b > a:
            raise ValueError(
                f"domain must have positive width in every dimension, got [{a}, {b}] "
                f"(width {b - a}) in dimension {d}"
            )
    return lo, hi


def _radical_inverse(i: np.ndarray, base: int) -> np.ndarray:
    out = np.zeros(i.shape, dtype=np.float64)
    f = 1.0 / base
    i = i.copy()
    while np.any(i > 0):
        out += f * (i % base)
        i //= base
        f /= base
    return out


def hammersley(n: int, dim: int) -> np.ndarray:
    """The ``n``-point Hammersley set in ``[0, 1)^dim``.

    Args:
        n: number of points.
        dim: dimension (at most 13).

    Returns:
        Array of shape ``(n, dim)``: column 0 is ``i / n``, column ``k`` the radical inverse of
        ``i`` in the ``k``-th prime base.
    """
    check_int(n, "n")
    check_int(dim, "dim")
    if dim > len(_PRIMES) + 1:
        raise ValueError(f"dim must be <= {len(_PRIMES) + 1} for hammersley, got {dim}")
    i = np.arange(n)
    cols = [i / n] + [_radical_inverse(i, _PRIMES[k]) for k in range(dim - 1)]
    return np.stack(cols, axis=1)


def _seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())


def sample_box(
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    n: int,
    method: Method = "uniform",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Sample ``n`` collocation points in the box ``[lower, upper]``.

    Args:
        lower: lower corner (number or sequence of length ``D``).
        upper: upper corner.
        n: number of points (for ``"grid"`` rounded down to a full tensor grid ``m^D``).
        method: ``"uniform"`` (i.i.d.), ``"grid"`` (tensor grid including the boundary),
            ``"hammersley"`` or ``"sobol"`` (scrambled, via ``scipy.stats.qmc.Sobol``).
        generator: source of randomness for ``"uniform"`` and the Sobol scrambling seed.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Points of shape ``(N, D)``.
    """
    lo, hi = box_bounds(lower, upper)
    check_int(n, "n")
    dim = len(lo)
    if method == "uniform":
        u = torch.rand((n, dim), generator=generator, dtype=torch.float64)
    elif method == "grid":
        m = max(math.floor(n ** (1.0 / dim) + 1e-9), 2)
        axes = [torch.linspace(0.0, 1.0, m, dtype=torch.float64) for _ in range(dim)]
        u = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, dim)
    elif method == "hammersley":
        u = torch.from_numpy(hammersley(n, dim))
    elif method == "sobol":
        from scipy.stats import qmc

        sob = qmc.Sobol(d=dim, scramble=True, seed=_seed(generator))
        m = math.ceil(math.log2(n))
        u = torch.from_numpy(sob.random_base2(m)[:n])
    else:
        raise ValueError(
            f"method must be 'uniform', 'grid', 'hammersley' or 'sobol', got {method!r}"
        )
    lo_t = torch.tensor(lo, dtype=torch.float64)
    hi_t = torch.tensor(hi, dtype=torch.float64)
    return (lo_t + u * (hi_t - lo_t)).to(dtype=dtype, device=device)


def sample_boundary(
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    n_per_face: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Uniform points on the faces of the box ``[lower, upper]``.

    In 1D the boundary is the two end points (``n_per_face`` is ignored).

    Args:
        lower: lower corner.
        upper: upper corner.
        n_per_face: points per face (``2 D`` faces).
        generator: source of randomness.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Points of shape ``(2, 1)`` in 1D, else ``(2 D n_per_face, D)``; each lies on a face.
    """
    lo, hi = box_bounds(lower, upper)
    check_int(n_per_face, "n_per_face")
    dim = len(lo)
    if dim == 1:
        return torch.tensor([[lo[0]], [hi[0]]], dtype=dtype, device=device)
    faces = []
    for d in range(dim):
        for value in (lo[d], hi[d]):
            pts = sample_box(
                lo, hi, n_per_face, "uniform", generator=generator, dtype=torch.float64
            )
            pts[:, d] = value
            faces.append(pts)
    return torch.cat(faces).to(dtype=dtype, device=device)
