"""Random draws that work whatever device the ``generator`` lives on.

PyTorch refuses ``torch.randn(..., device="cuda", generator=cpu_generator)``. A recipe's
:class:`~torchloom.core.recipes.RunContext` hands out one CPU generator (so that a seed gives the
same draws on every device), and a user may pass a CUDA generator to a CPU model; either way the
library must not fail. Each function here draws on the generator's device (the target device
when ``generator`` is ``None``) and moves the result to ``device``. With a CPU generator the
values are therefore identical on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["exponential", "multinomial", "rand", "randint", "randn", "randperm"]

_Device = torch.device | str | None


def _where(generator: torch.Generator | None, device: _Device) -> torch.device:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _target(device: _Device) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def _shape(size: Sequence[int] | torch.Size) -> tuple[int, ...]:
    shape = tuple(size)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"size must be a sequence of non-negative ints, got {tuple(size)!r}")
    return shape


def rand(
    size: Sequence[int] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: _Device = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``U[0, 1)`` samples of shape ``size`` on ``device`` (drawn on the generator's device)."""
    x = torch.rand(_shape(size), generator=generator, device=_where(generator, device), dtype=dtype)
    return x.to(_target(device))


def randn(
    size: Sequence[int] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: _Device = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Standard normal samples of shape ``size`` on ``device``."""
    x = torch.randn(
        _shape(size), generator=generator, device=_where(generator, device), dtype=dtype
    )
    return x.to(_target(device))


def randint(
    low: int,
    high: int,
    size: Sequence[int] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    device: _Device = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Integers uniform on ``[low, high)`` of shape ``size`` on ``device`` (int64 by default)."""
    if high <= low:
        raise ValueError(f"high must be greater than low, got low={low}, high={high}")
    where = _where(generator, device)
    x = torch.randint(low, high, _shape(size), generator=generator, device=where, dtype=dtype)
    return x.to(_target(device))


def randperm(
    n: int, *, generator: torch.Generator | None = None, device: _Device = None
) -> torch.Tensor:
    """A random permutation of ``0..n-1`` (int64) on ``device``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return torch.randperm(n, generator=generator, device=_where(generator, device)).to(
        _target(device)
    )


def exponential(like: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``Exp(1)`` samples with the shape, dtype and device of ``like`` (never exactly 0)."""
    where = _where(generator, like.device)
    e = torch.empty(like.shape, dtype=like.dtype, device=where).exponential_(generator=generator)
    return e.to(like.device)


def multinomial(
    probs: torch.Tensor,
    num_samples: int,
    *,
    replacement: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``torch.multinomial`` over the rows of ``probs`` ``(N,)`` or ``(B, N)``; indices on
    ``probs``' device. Half-precision weights are sampled in float32."""
    weights = probs.detach()
    if weights.dtype in (torch.float16, torch.bfloat16):
        weights = weights.float()  # multinomial wants at least single precision on every device
    where = _where(generator, probs.device)
    idx = torch.multinomial(
        weights.to(where), num_samples, replacement=replacement, generator=generator
    )
    return idx.to(probs.device)
