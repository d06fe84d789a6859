"""Training-memory accounting that works on CPU: bytes saved for backward.

:class:`SavedTensorMeter` installs ``torch.autograd.graph.saved_tensors_hooks`` and follows every
tensor autograd keeps for the backward pass, counting each underlying storage once (a weight saved
by T matmuls is one storage) and releasing it when autograd frees it (after ``backward`` or when
the graph is dropped). ``peak_bytes`` is then the largest activation memory held at any moment,
the quantity SLTT makes independent of the number of time steps. Views are counted by the bytes
they span (a time step ``x[t]`` of an input is one step's worth, not the whole sequence), and
tensors sharing storage with ``exclude`` (parameters, the input batch) are not counted. On CUDA,
:func:`measure_memory` also reports ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MemoryReport", "SavedTensorMeter", "measure_memory"]


def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # e.g. tensors without storage
        return None
    return (str(t.device), ptr) if ptr else None


def _view_key(t: torch.Tensor) -> tuple[str, int, int] | None:
    """The memory a (possibly strided) view spans: start address and byte length."""
    if t.numel() == 0 or _storage_key(t) is None:
        return None
    span = 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))
    return (str(t.device), t.data_ptr(), span * t.element_size())


class _Packed:
    """What autograd stores instead of the tensor; its deletion tells the meter."""

    __slots__ = ("key", "meter", "tensor")

    def __init__(self, tensor: torch.Tensor, meter: SavedTensorMeter, key: Any) -> None:
        # a detached alias (same storage): holding the tensor itself would make a reference
        # cycle tensor -> grad_fn -> saved variable -> tensor for saved outputs, so a graph
        # dropped without backward would never be freed
        self.tensor = tensor.detach()
        self.meter = meter
        self.key = key

    def __del__(self) -> None:
        if self.key is not None:
            self.meter._release(self.key)


class SavedTensorMeter:
    """Context manager measuring bytes saved for backward (current and peak).

    Args:
        exclude: tensors (typically ``model.parameters()`` and the input batch) whose storages,
            and every view of them, are not counted, so the figure is activation memory only.

    Attributes:
        current_bytes: bytes of distinct storages autograd holds now.
        peak_bytes: the maximum of ``current_bytes`` since entering.
        packed: number of tensors autograd saved (with repeats).

    Example::

        with SavedTensorMeter(exclude=model.parameters()) as meter:
            loss = model(x).sum(); loss.backward()
        meter.peak_bytes

    Saved tensors are handed back to autograd detached, so double backward
    (``create_graph=True``) through operations recorded under the meter is not supported.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {k for k in (_storage_key(t) for t in exclude) if k is not None}
        self._live: dict[tuple[str, int, int], list[int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.packed = 0
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> _Packed:
        self.packed += 1
        key = _view_key(t)
        if key is None or _storage_key(t) in self._excluded:
            return _Packed(t, self, None)
        entry = self._live.get(key)
        if entry is None:
            n = key[2]
            self._live[key] = [1, n]
            self.current_bytes += n
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        else:
            entry[0] += 1
        return _Packed(t, self, key)

    @staticmethod
    def _unpack(p: _Packed) -> torch.Tensor:
        return p.tensor

    def _release(self, key: tuple[str, int, int]) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current_bytes -= entry[1]
            del self._live[key]

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None


@dataclass(frozen=True)
class MemoryReport:
    """Peak saved-for-backward bytes (any device) and, on CUDA, peak allocated bytes above the
    level before the call (``None`` elsewhere)."""

    saved_peak_bytes: int
    cuda_peak_bytes: int | None


def measure_memory(
    fn: Callable[[], Any],
    exclude: Iterable[torch.Tensor] = (),
    device: str | torch.device | None = None,
) -> MemoryReport:
    """Run ``fn()`` (e.g. one training step) and report its peak training memory."""
    dev = torch.device(device) if device is not None else None
    on_cuda = dev is not None and dev.type == "cuda"
    base = 0
    if on_cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    with SavedTensorMeter(exclude=exclude) as meter:
        fn()
    cuda_peak = None
    if on_cuda:
        torch.cuda.synchronize(dev)
        cuda_peak = torch.cuda.max_memory_allocated(dev) - base
    return MemoryReport(meter.peak_bytes, cuda_peak)
