"""The search loop shared by every strategy: alternating steps, progress, checkpoints, DDP.

:func:`search` runs ``epochs`` passes over the ``train`` batches, pairing each with the next
``val`` batch (the validation iterator restarts when it runs out), and hands both to the
strategy's :meth:`Strategy.step`, which alternates architecture and weight updates as its
method prescribes. After every epoch it can write a checkpoint (model, strategy state,
history, random states) from which a later call resumes; at the end the strategy reads out the
:class:`~torchloom.nas.genotype.Genotype`.

A **strategy** implements the :class:`Strategy` protocol. Most subclass
:class:`GradientStrategy`, which owns the two optimisers DARTS uses (SGD with momentum and a
cosine schedule for the weights, Adam for the architecture), the weight step, gradient
averaging over processes and (de)serialisation, so a new method only writes
:meth:`GradientStrategy.arch_step` (and overrides what it changes).

Distributed (``torchrun``): the model's parameters are broadcast from rank 0 at the start, and
strategies average every gradient over the processes before each optimiser step
(:meth:`GradientStrategy.sync`), which is exactly what ``DistributedDataParallel`` does for one
backward. An explicit all-reduce is used instead of wrapping the model with
:func:`torchloom.core.distributed.wrap_ddp` because architecture steps take gradients of
several forward passes through perturbed or virtual weights (second-order DARTS, RARTS's two
networks), which DDP's per-backward reducer does not support. Give each rank its shard with
:func:`torchloom.core.distributed.distributed_loader`; :func:`search` calls ``set_epoch``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload, runtime_checkable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from torchloom.core import distributed as tdist
from torchloom.core.checks import check_int, check_positive
from torchloom.nas.blocks import ChainSupernet
from torchloom.nas.genotype import Genotype, derive_genotype
from torchloom.nas.supernet import Supernet

__all__ = [
    "Batch",
    "GradientStrategy",
    "SearchResult",
    "Strategy",
    "evaluate",
    "search",
    "train_network",
]

Batch = tuple[torch.Tensor, torch.Tensor]
"""A batch ``(x, y)``: inputs ``(B, C, H, W)`` and integer labels ``(B,)``."""


@runtime_checkable
class Strategy(Protocol):
    """What :func:`search` needs from a search method."""

    def setup(self, model: Any, epochs: int) -> None:
        """Create optimisers and state for ``model`` and a run of ``epochs`` epochs."""
        ...

    def on_epoch_start(self, model: Any, epoch: int) -> None:
        """Called before each epoch (learning-rate and temperature schedules)."""
        ...

    def step(self, model: Any, train: Batch, val: Batch, epoch: int) -> dict[str, float]:
        """One search step on a training and a validation batch; returns scalar metrics."""
        ...

    def on_epoch_end(self, model: Any, epoch: int) -> dict[str, float]:
        """Called after each epoch; returns extra metrics for the history."""
        ...

    def derive(self, model: Any) -> Any:
        """The discrete architecture at the end of the search (a :class:`Genotype` for a cell
        supernet, one op name per layer for a chain)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


class GradientStrategy:
    """Base class of the gradient-based strategies (DARTS and its descendants).

    Weights: SGD (``w_lr``, ``w_momentum``, ``w_weight_decay``), cosine-annealed per epoch from
    ``w_lr`` to ``w_lr_min``, gradient norm clipped at ``w_grad_clip``. Architecture: Adam
    (``a_lr``, ``a_betas``, ``a_weight_decay``), DARTS's defaults. Subclasses implement
    :meth:`arch_step`; :meth:`step` calls it (from epoch ``arch_start_epoch`` on) and then
    :meth:`weight_step`, DARTS's order.

    Args:
        w_lr: initial weight learning rate.
        w_lr_min: final weight learning rate of the cosine schedule.
        w_momentum: SGD momentum.
        w_weight_decay: SGD weight decay.
        w_grad_clip: max gradient norm of the weights (``None``: no clipping).
        a_lr: architecture learning rate.
        a_betas: Adam betas for the architecture.
        a_weight_decay: architecture weight decay.
        arch_start_epoch: epochs of weight-only warm-up.
        criterion: ``criterion(logits, y) -> loss``, cross-entropy by default.
    """

    def __init__(
        self,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        w_grad_clip: float | None = 5.0,
        a_lr: float = 3e-4,
        a_betas: tuple[float, float] = (0.5, 0.999),
        a_weight_decay: float = 1e-3,
        arch_start_epoch: int = 0,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.w_lr = check_positive(w_lr, "w_lr")
        self.w_lr_min = check_positive(w_lr_min, "w_lr_min", strict=False)
        self.w_momentum = check_positive(w_momentum, "w_momentum", strict=False)
        self.w_weight_decay = check_positive(w_weight_decay, "w_weight_decay", strict=False)
        self.w_grad_clip = w_grad_clip
        self.a_lr = check_positive(a_lr, "a_lr")
        self.a_betas = a_betas
        self.a_weight_decay = check_positive(a_weight_decay, "a_weight_decay", strict=False)
        self.arch_start_epoch = check_int(arch_start_epoch, "arch_start_epoch", minimum=0)
        self.criterion = criterion or _cross_entropy
        self.epochs = 1
        self.w_opt: torch.optim.Optimizer | None = None
        self.a_opt: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ set-up

    def setup(self, model: Supernet, epochs: int) -> None:
        """Create the two optimisers.

        Args:
            model: the supernet.
            epochs: length of the run (for the schedule).
        """
        self.epochs = check_int(epochs, "epochs")
        self.w_opt = torch.optim.SGD(
            list(model.weight_parameters()),
            lr=self.w_lr,
            momentum=self.w_momentum,
            weight_decay=self.w_weight_decay,
        )
        self.a_opt = torch.optim.Adam(
            model.arch_parameters(),
            lr=self.a_lr,
            betas=self.a_betas,
            weight_decay=self.a_weight_decay,
        )

    def lr_at(self, epoch: int) -> float:
        """The weight learning rate of ``epoch``: cosine from ``w_lr`` to ``w_lr_min``.

        Args:
            epoch: 0-based epoch.

        Returns:
            The learning rate.
        """
        c = 0.5 * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self.w_lr_min + (self.w_lr - self.w_lr_min) * c

    def on_epoch_start(self, model: Supernet, epoch: int) -> None:
        """Set the epoch's weight learning rate.

        Args:
            model: the supernet.
            epoch: 0-based epoch.
        """
        for group in self._w_opt().param_groups:
            group["lr"] = self.lr_at(epoch)

    def on_epoch_end(self, model: Supernet, epoch: int) -> dict[str, float]:
        """No extra metrics by default.

        Args:
            model: the supernet.
            epoch: 0-based epoch.

        Returns:
            An empty dict.
        """
        return {}

    @property
    def current_lr(self) -> float:
        """The weight optimiser's current learning rate."""
        return float(self._w_opt().param_groups[0]["lr"])

    def _w_opt(self) -> torch.optim.Optimizer:
        if self.w_opt is None:
            raise RuntimeError("call setup(model, epochs) before stepping the strategy")
        return self.w_opt

    def _a_opt(self) -> torch.optim.Optimizer:
        if self.a_opt is None:
            raise RuntimeError("call setup(model, epochs) before stepping the strategy")
        return self.a_opt

    # ------------------------------------------------------------------ steps

    @staticmethod
    def sync(params: Iterable[torch.Tensor]) -> None:
        """Average ``.grad`` of ``params`` over processes (no-op in a single process).

        Args:
            params: parameters whose gradients to average.
        """
        if not tdist.is_initialized():
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(tdist.world_size())

    def weight_loss(self, model: Supernet, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight objective on a training batch (override to add terms).

        Args:
            model: the supernet.
            batch: ``(x, y)``.

        Returns:
            ``(loss, logits)``.
        """
        x, y = batch
        logits = model(x)
        return self.criterion(logits, y), logits

    def weight_step(self, model: Supernet, batch: Batch) -> dict[str, float]:
        """One SGD step of the weights on ``batch`` (architecture fixed).

        Args:
            model: the supernet.
            batch: ``(x, y)``.

        Returns:
            ``{"train_loss", "train_acc"}``.
        """
        opt = self._w_opt()
        opt.zero_grad(set_to_none=True)
        loss, logits = self.weight_loss(model, batch)
        _check_loss(loss, "training")
        loss.backward()
        for a in model.arch_parameters():
            a.grad = None
        params = list(model.weight_parameters())
        self.sync(params)
        if self.w_grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.w_grad_clip)
        opt.step()
        acc = (logits.argmax(-1) == batch[1]).float().mean()
        return {"train_loss": float(loss.detach()), "train_acc": float(acc)}

    def arch_step(self, model: Supernet, train: Batch, val: Batch) -> dict[str, float]:
        """One architecture update; subclasses implement it.

        Args:
            model: the supernet.
            train: a training batch.
            val: a validation batch.

        Returns:
            Scalar metrics.
        """
        raise NotImplementedError

    def step(self, model: Supernet, train: Batch, val: Batch, epoch: int) -> dict[str, float]:
        """Architecture step (after the warm-up), then weight step.

        Args:
            model: the supernet.
            train: a training batch.
            val: a validation batch.
            epoch: 0-based epoch.

        Returns:
            The merged metrics of both steps.
        """
        metrics: dict[str, float] = {}
        if epoch >= self.arch_start_epoch:
            metrics.update(self.arch_step(model, train, val))
        metrics.update(self.weight_step(model, train))
        return metrics

    def derive(self, model: Any) -> Any:
        """The read-out of the searched architecture: DARTS's
        (:func:`~torchloom.nas.genotype.derive_genotype`) on a cell
        :class:`~torchloom.nas.supernet.Supernet`, the most likely op per layer
        (:meth:`~torchloom.nas.blocks.ChainSupernet.derive`) on a layer-wise chain.

        Args:
            model: the supernet.

        Returns:
            A :class:`~torchloom.nas.genotype.Genotype`, or one op name per layer for a chain.
        """
        if isinstance(model, Supernet):
            return derive_genotype(model)
        return model.derive()

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Optimiser states.

        Returns:
            ``{"w_opt": ..., "a_opt": ...}``.
        """
        return {"w_opt": self._w_opt().state_dict(), "a_opt": self._a_opt().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (after :meth:`setup`).

        Args:
            state: a dict from :meth:`state_dict`.
        """
        self._w_opt().load_state_dict(state["w_opt"])
        self._a_opt().load_state_dict(state["a_opt"])


def _check_loss(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise FloatingPointError(f"the {what} loss is not finite ({float(loss.detach())})")


A = TypeVar("A")


@dataclass
class SearchResult(Generic[A]):
    """What :func:`search` returns.

    Attributes:
        genotype: the derived architecture: a :class:`~torchloom.nas.genotype.Genotype` for a
            cell :class:`~torchloom.nas.supernet.Supernet`, the list of chosen op names (one
            per layer) for a :class:`~torchloom.nas.blocks.ChainSupernet`.
        history: one dict of averaged metrics per epoch (``epoch``, ``train_loss``, ...).
        model: the searched supernet.
        strategy: the strategy, with its final state.
        seconds_per_step: median wall time of a search step in this run (the first step,
            which pays for lazy initialisation, is left out when there are more).
        step_seconds: wall time of every search step of this run.
    """

    genotype: A
    history: list[dict[str, float]] = field(default_factory=list)
    model: Supernet | ChainSupernet | None = None
    strategy: Any = None
    seconds_per_step: float = float("nan")
    step_seconds: list[float] = field(default_factory=list)


def _batches(loader: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        n = 0
        for b in loader:
            n += 1
            yield b
        if n == 0:
            raise ValueError("val must yield at least one batch")


def _rng_states(model: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state()}
    g = getattr(model.mixing, "generator", None)
    if isinstance(g, torch.Generator):
        out["mixing"] = g.get_state()
    return out


def _set_rng_states(model: nn.Module, states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    g = getattr(model.mixing, "generator", None)
    if isinstance(g, torch.Generator) and "mixing" in states:
        g.set_state(states["mixing"])


def _broadcast_model(model: nn.Module) -> None:
    if not tdist.is_initialized():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t, src=0)


@overload
def search(
    strategy: Strategy,
    model: Supernet,
    train: Iterable[Batch],
    val: Iterable[Batch],
    epochs: int,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[..., Iterator[Any]] | None = None,
    log: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> SearchResult[Genotype]: ...


@overload
def search(
    strategy: Strategy,
    model: ChainSupernet,
    train: Iterable[Batch],
    val: Iterable[Batch],
    epochs: int,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[..., Iterator[Any]] | None = None,
    log: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> SearchResult[list[str]]: ...


def search(
    strategy: Strategy,
    model: Supernet | ChainSupernet,
    train: Iterable[Batch],
    val: Iterable[Batch],
    epochs: int,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[..., Iterator[Any]] | None = None,
    log: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> SearchResult[Any]:
    """Run a differentiable architecture search.

    One loop for both search spaces: the DARTS cell :class:`~torchloom.nas.supernet.Supernet`
    (read out as a :class:`~torchloom.nas.genotype.Genotype`) and the layer-wise
    :class:`~torchloom.nas.blocks.ChainSupernet` of ProxylessNAS/FBNet (read out as one op
    name per layer).

    Args:
        strategy: the search method (a :class:`Strategy`).
        model: the supernet (cell or chain).
        train: an iterable of training batches ``(x, y)`` (a ``DataLoader``, a list, ...),
            iterated once per epoch.
        val: validation batches, drawn one per training batch and cycled.
        epochs: number of epochs.
        checkpoint: file written after every epoch (on rank 0); with ``resume`` an existing
            file is loaded and the search continues after its last epoch.
        resume: whether to resume from an existing ``checkpoint``.
        progress: ``progress(iterable, total=..., description=...)`` wrapper such as
            :meth:`torchloom.core.recipes.RunContext.progress` (``None``: silent).
        log: called with one summary line per epoch (main process only).
        device: move batches here (default: the model's device).

    Returns:
        A :class:`SearchResult` with the derived genotype and the per-epoch history.
    """
    if not isinstance(model, Supernet | ChainSupernet):
        raise TypeError(f"model must be a Supernet or a ChainSupernet, got {type(model).__name__}")
    for name in ("setup", "step", "derive", "state_dict"):
        if not callable(getattr(strategy, name, None)):
            raise TypeError(f"strategy must implement the Strategy protocol (missing {name})")
    epochs = check_int(epochs, "epochs")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    _broadcast_model(model)
    strategy.setup(model, epochs)
    history: list[dict[str, float]] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        model.load_state_dict(state["model"])
        strategy.load_state_dict(state["strategy"])
        history = list(state["history"])
        start = int(state["epoch"])
        _set_rng_states(model, state["rng"])
    val_iter = _batches(val)
    step_seconds: list[float] = []
    for epoch in range(start, epochs):
        for loader in (train, val):
            if isinstance(loader, DataLoader):
                tdist.set_epoch(loader, epoch)
        model.train()
        strategy.on_epoch_start(model, epoch)
        sums: dict[str, float] = {}
        count = 0
        batches: Iterable[Batch] = train
        if progress is not None:
            total = len(train) if isinstance(train, Sequence | DataLoader) else None
            batches = progress(train, total=total, description=f"search {epoch + 1}/{epochs}")
        for x, y in batches:
            vx, vy = next(val_iter)
            t0 = time.perf_counter()
            metrics = strategy.step(model, (x.to(dev), y.to(dev)), (vx.to(dev), vy.to(dev)), epoch)
            step_seconds.append(time.perf_counter() - t0)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
        if count == 0:
            raise ValueError("train must yield at least one batch per epoch")
        row = {"epoch": float(epoch)}
        for k, v in sums.items():
            mean = torch.tensor(v / count, dtype=torch.float64)
            row[k] = float(tdist.all_reduce_mean(mean))
        row.update(strategy.on_epoch_end(model, epoch))
        history.append(row)
        if log is not None and tdist.is_main_process():
            log(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if ckpt is not None and tdist.is_main_process():
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "strategy": strategy.state_dict(),
                "history": history,
                "rng": _rng_states(model),
            }
            tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
            torch.save(payload, tmp)
            tmp.replace(ckpt)
        tdist.barrier()
    genotype = strategy.derive(model)
    return SearchResult(
        genotype=genotype,
        history=history,
        model=model,
        strategy=strategy,
        seconds_per_step=_median(step_seconds[1:] or step_seconds),
        step_seconds=step_seconds,
    )


def _median(values: list[float]) -> float:
    if not values:
        return float("nan")
    return float(torch.tensor(values, dtype=torch.float64).median())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    device: str | torch.device | None = None,
    **forward_kwargs: Any,
) -> float:
    """Accuracy of ``model`` (in eval mode) over ``batches``.

    Args:
        model: a classifier ``(B, C, H, W) -> (B, K)``.
        batches: ``(x, y)`` batches.
        device: where to move the batches (default: the model's device).
        forward_kwargs: extra keyword arguments of the forward (e.g. supernet ``weights``).

    Returns:
        The fraction of correct predictions.
    """
    was = model.training
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    correct = total = 0
    for x, y in batches:
        pred = model(x.to(dev), **forward_kwargs).argmax(-1)
        correct += int((pred == y.to(dev)).sum())
        total += y.numel()
    model.train(was)
    if total == 0:
        raise ValueError("batches must hold at least one example")
    return correct / total


def train_network(
    model: nn.Module,
    train: Iterable[Batch],
    epochs: int,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    grad_clip: float | None = 5.0,
    device: str | torch.device | None = None,
    progress: Callable[..., Iterator[Any]] | None = None,
) -> nn.Module:
    """Train a (discrete) network from scratch with SGD and a cosine schedule, as DARTS's
    evaluation phase does.

    Args:
        model: the network.
        train: ``(x, y)`` batches, iterated once per epoch.
        epochs: number of epochs.
        lr: initial learning rate (cosine-annealed to 0).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        grad_clip: max gradient norm (``None``: none).
        device: where to move the batches (default: the model's device).
        progress: an optional progress wrapper over the epochs.

    Returns:
        The trained model (the same object).
    """
    epochs = check_int(epochs, "epochs")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    it: Iterable[int] = range(epochs)
    if progress is not None:
        it = progress(it, total=epochs, description="retrain")
    for _ in it:
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
            _check_loss(loss, "training")
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
        sched.step()
    return model
