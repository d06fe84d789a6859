"""``torch.distributed`` helpers for scripts launched by ``torchrun`` (or run as one process).

Everything degrades to a single-process no-op when no process group is initialised, so the same
training loop runs under ``python train.py`` and ``torchrun --nproc-per-node N train.py``::

    info = init_from_env()                    # reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*
    model = wrap_ddp(model.to(info.device))   # DistributedDataParallel when initialised
    loader = distributed_loader(dataset, batch_size=64, shuffle=True, seed=0)
    for epoch in range(n):
        set_epoch(loader, epoch)              # reshuffles the DistributedSampler
        ...
    loss = all_reduce_mean(loss.detach())     # the same value on every rank
    cleanup()

The backend is ``gloo`` on CPU and ``nccl`` when CUDA is available, unless one is passed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from torchloom.core.checks import check_floating

__all__ = [
    "WorldInfo",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "distributed_loader",
    "init_from_env",
    "is_initialized",
    "is_main_process",
    "local_rank",
    "rank",
    "set_epoch",
    "world_size",
    "wrap_ddp",
]


@dataclass(frozen=True)
class WorldInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``local_rank`` on the node,
    the ``backend`` (``None`` when single-process), its ``device``, and whether a process group
    is ``initialized``."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device
    initialized: bool

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that prints and writes files)."""
        return self.rank == 0


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is active."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """Rank on this node, from ``LOCAL_RANK`` (0 when not distributed)."""
    if not is_initialized():
        return 0
    return _env_int(os.environ, "LOCAL_RANK", default=rank())


def is_main_process() -> bool:
    """True on rank 0, and in a single-process run."""
    return rank() == 0


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"environment variable {name} must be set, got nothing")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _device_for(backend: str | None, local: int) -> torch.device:
    if backend == "nccl" or (backend is None and torch.cuda.is_available()):
        return torch.device("cuda", local)
    return torch.device("cpu")


def _current_info() -> WorldInfo:
    backend = str(dist.get_backend()) if is_initialized() else None
    local = local_rank()
    return WorldInfo(rank(), world_size(), local, backend, _device_for(backend, local), True)


def init_from_env(backend: str | None = None) -> WorldInfo:
    """Initialise the default process group from ``torchrun``'s environment, if it is there.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without
    ``RANK``/``WORLD_SIZE`` this is a single-process no-op (rank 0 of 1, device ``cuda`` when
    available else ``cpu``). ``backend`` defaults to ``nccl`` with CUDA (and then selects the
    device ``cuda:LOCAL_RANK``), else ``gloo``. Calling it again returns the current world.
    """
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, got {type(backend).__name__}")
    if is_initialized():
        return _current_info()
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return WorldInfo(0, 1, 0, None, _device_for(None, 0), False)
    if not dist.is_available():
        raise RuntimeError("RANK/WORLD_SIZE are set but this torch build has no torch.distributed")
    r = _env_int(env, "RANK")
    ws = _env_int(env, "WORLD_SIZE")
    local = _env_int(env, "LOCAL_RANK", default=r)
    if ws < 1 or not 0 <= r < ws:
        raise ValueError(f"RANK must lie in [0, WORLD_SIZE), got RANK={r}, WORLD_SIZE={ws}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise ValueError(
                f"environment variable {name} must be set for a distributed run "
                f"(RANK={r}, WORLD_SIZE={ws}), got nothing; launch with torchrun"
            )
    _env_int(env, "MASTER_PORT")
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    device = _device_for(chosen, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL binds each process to its own GPU
    dist.init_process_group(backend=chosen, init_method="env://", rank=r, world_size=ws)
    return WorldInfo(r, ws, local, chosen, device, True)


def wrap_ddp(model: nn.Module, **ddp_kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(model)`` when a process group is active, else ``model``.

    The model must already be on this process's device (``init_from_env().device``);
    ``ddp_kwargs`` go to ``DistributedDataParallel``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not is_initialized():
        return model
    devices = {p.device for p in model.parameters()}
    if len(devices) == 1 and (device := next(iter(devices))).type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device.index])
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def distributed_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    **loader_kwargs: Any,
) -> DataLoader[Any]:
    """A ``DataLoader`` that gives each rank its own shard of ``dataset``.

    Distributed: a ``DistributedSampler`` (``shuffle``, ``seed``, ``drop_last``) splits the
    indices ``rank, rank + world_size, ...`` (after a seeded shuffle); call :func:`set_epoch`
    every epoch to reshuffle. Single process: a plain loader whose shuffle uses a generator
    seeded with ``seed``. ``batch_size`` is per process. ``loader_kwargs`` go to ``DataLoader``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    for key in ("sampler", "batch_sampler", "shuffle", "generator"):
        if key in loader_kwargs:
            raise TypeError(f"distributed_loader chooses {key!r} itself; got {key}=...")
    if not is_initialized():
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            **loader_kwargs,
        )
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset,
        num_replicas=world_size(),
        rank=rank(),
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs
    )


def set_epoch(loader: DataLoader[Any], epoch: int) -> None:
    """Tell a :func:`distributed_loader`'s ``DistributedSampler`` the epoch (no-op otherwise)."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes, as a new tensor (a copy when single-process).

    Not differentiable (for metrics and losses being logged). Every rank must call it with the
    same shape.

    Shapes:
        tensor: ``(*)``; output: ``(*)``.
    """
    check_floating(tensor, "tensor")
    out = tensor.detach().clone()
    if not is_initialized():
        return out
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.div_(world_size())


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Destroy the default process group (no-op when not distributed)."""
    if is_initialized():
        dist.destroy_process_group()
