"""SD-DARTS (Zhu et al., 2021): DARTS with self-distillation from a voting teacher.

The supernets of the last ``K`` snapshots (taken every ``snapshot_every`` search steps) vote:
the teacher distribution is the average of their softened output probabilities,
``q = (1/K) Σ_k softmax(f_k(x) / T)``. The weight loss gains a distillation term that pulls
the current supernet towards it,

    L_w = CE(f(x), y) + λ · T² · KL(q ‖ softmax(f(x) / T)),

which smooths the loss landscape of the supernet (lower sharpness) and narrows the gap between
the supernet and the discretised architecture. The architecture step is DARTS's, on the
validation loss with the same distillation term (``distill_arch=True``, the default: the
supernet's training in both of its steps is guided by the previous steps' outputs).
:func:`voting_teacher` and :func:`distillation_loss` are the two pieces;
:func:`dominant_hessian_eigenvalue` measures the sharpness of ``L_val`` in ``α``.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_int, check_positive
from torchloom.nas.darts import DARTS
from torchloom.nas.search import Batch
from torchloom.nas.selection import _FrozenBuffers
from torchloom.nas.supernet import Supernet

__all__ = ["SDDARTS", "distillation_loss", "dominant_hessian_eigenvalue", "voting_teacher"]


def voting_teacher(logits: Sequence[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """The voting teacher: mean of the snapshots' softened probabilities.

    Args:
        logits: ``K`` tensors ``(B, classes)``, one per snapshot.
        temperature: softmax temperature ``T``.

    Returns:
        ``(B, classes)`` probabilities (rows sum to 1).
    """
    if len(logits) == 0:
        raise ValueError("logits must hold at least one snapshot's output")
    temperature = check_positive(temperature, "temperature")
    for i, z in enumerate(logits):
        check_floating(z, f"logits[{i}]")
    return torch.stack([(z / temperature).softmax(-1) for z in logits]).mean(0)


def distillation_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``T² · KL(teacher ‖ softmax(student / T))``, averaged over the batch.

    Args:
        student_logits: ``(B, classes)``.
        teacher_probs: ``(B, classes)`` probabilities (no gradient flows into them).
        temperature: softmax temperature ``T``.

    Returns:
        A scalar.
    """
    check_floating(student_logits, "student_logits")
    if teacher_probs.shape != student_logits.shape:
        raise ValueError(
            f"teacher_probs must have the student's shape {tuple(student_logits.shape)}, "
            f"got {tuple(teacher_probs.shape)}"
        )
    temperature = check_positive(temperature, "temperature")
    log_p = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(log_p, teacher_probs.detach(), reduction="batchmean")
    return kl * temperature**2


class SDDARTS(DARTS):
    """DARTS whose weight loss distils from a voting teacher of previous supernets.

    Args:
        num_teachers: snapshots ``K`` in the vote.
        snapshot_every: search steps between snapshots (1: the teachers are the supernets of
            the previous ``K`` steps, as in the paper).
        distill_weight: ``λ``.
        temperature: ``T``.
        distill_arch: distil in the architecture step too (the validation loss of ``α`` gains
            the same term, on the validation batch): the whole supernet — weights and
            architecture — is guided by its previous steps; ``False`` distils the weights only.
        kwargs: :class:`~torchloom.nas.darts.DARTS` arguments.
    """

    def __init__(
        self,
        num_teachers: int = 2,
        snapshot_every: int = 1,
        distill_weight: float = 1.0,
        temperature: float = 2.0,
        distill_arch: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.distill_arch = bool(distill_arch)
        self.num_teachers = check_int(num_teachers, "num_teachers")
        self.snapshot_every = check_int(snapshot_every, "snapshot_every")
        self.distill_weight = check_positive(distill_weight, "distill_weight", strict=False)
        self.temperature = check_positive(temperature, "temperature")
        self.snapshots: deque[dict[str, torch.Tensor]] = deque(maxlen=self.num_teachers)
        self.steps_done = 0
        self._teacher: Supernet | None = None

    def _teacher_logits(self, model: Supernet, x: torch.Tensor) -> list[torch.Tensor]:
        if self._teacher is None:
            self._teacher = copy.deepcopy(model)
        out = []
        with torch.no_grad():
            for state in self.snapshots:
                self._teacher.load_state_dict(state)
                self._teacher.train(model.training)
                out.append(self._teacher(x))
        return out

    def weight_loss(self, model: Supernet, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``CE + λ T² KL(voting teacher ‖ student)`` (plain CE until a snapshot exists).

        Args:
            model: the supernet.
            batch: a training batch.

        Returns:
            ``(loss, logits)``.
        """
        x, y = batch
        logits = model(x)
        loss = self.criterion(logits, y)
        if self.snapshots and self.distill_weight > 0:
            teacher = voting_teacher(self._teacher_logits(model, x), self.temperature)
            loss = loss + self.distill_weight * distillation_loss(logits, teacher, self.temperature)
        return loss, logits

    def arch_step(self, model: Supernet, train: Batch, val: Batch) -> dict[str, float]:
        """DARTS's architecture step; with ``distill_arch`` the loss of ``α`` is
        ``CE + λ T² KL(voting teacher ‖ student)`` on the validation batch (and, second order,
        the virtual step's training loss gains the term on the training batch).

        Args:
            model: the supernet.
            train: a training batch.
            val: a validation batch.

        Returns:
            ``{"val_loss"}``.
        """
        if not (self.distill_arch and self.snapshots and self.distill_weight > 0):
            return super().arch_step(model, train, val)
        base = self.criterion
        teachers = {
            id(b[1]): voting_teacher(self._teacher_logits(model, b[0]), self.temperature)
            for b in ((val, train) if self.order == 2 else (val,))
        }
        lam, temp = self.distill_weight, self.temperature

        def distilled(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            loss = base(logits, y)
            t = teachers.get(id(y))
            return loss if t is None else loss + lam * distillation_loss(logits, t, temp)

        self.criterion = distilled
        try:
            return super().arch_step(model, train, val)
        finally:
            self.criterion = base

    def step(self, model: Supernet, train: Batch, val: Batch, epoch: int) -> dict[str, float]:
        """DARTS step, then a snapshot every ``snapshot_every`` steps.

        Args:
            model: the supernet.
            train: a training batch.
            val: a validation batch.
            epoch: 0-based epoch.

        Returns:
            The DARTS metrics.
        """
        metrics = super().step(model, train, val, epoch)
        self.steps_done += 1
        if self.steps_done % self.snapshot_every == 0:
            self.snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Optimiser states, snapshots and the step counter.

        Returns:
            The state.
        """
        state = super().state_dict()
        state["snapshots"] = list(self.snapshots)
        state["steps_done"] = self.steps_done
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state: from :meth:`state_dict`.
        """
        super().load_state_dict(state)
        self.snapshots = deque(state["snapshots"], maxlen=self.num_teachers)
        self.steps_done = int(state["steps_done"])


def dominant_hessian_eigenvalue(
    model: Supernet,
    batches: Sequence[Batch],
    iters: int = 20,
    generator: torch.Generator | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_stats: bool = False,
    tol: float = 0.0,
    largest: bool = False,
) -> float:
    """Dominant eigenvalue of ``∇²_α L_val`` by power iteration on Hessian-vector products
    (the sharpness measure of Zela et al. 2020 used by SD-DARTS).

    Args:
        model: the supernet.
        batches: validation batches (the loss is their mean).
        iters: power iterations.
        generator: randomness of the starting vector.
        criterion: ``criterion(logits, y)``, cross-entropy by default.
        batch_stats: differentiate the loss the architecture step optimises, with train-mode
            BatchNorm (batch statistics; running statistics left untouched); ``False``
            evaluates in eval mode with the running statistics.
        tol: stop before ``iters`` once the estimate changes by at most ``tol`` times its
            magnitude between two iterations (``0``: always run ``iters``).
        largest: return the largest eigenvalue (RobustDARTS's ``max(eigvals)``) rather than
            the one largest in magnitude: when the latter is negative, a second power
            iteration on ``H - λ I`` (shifted by it) finds the top of the spectrum.

    Returns:
        The eigenvalue estimate (Rayleigh quotient at the last iterate).
    """
    crit = criterion or F.cross_entropy
    tol = check_positive(tol, "tol", strict=False)
    arch = model.arch_parameters()
    was = model.training
    model.train(batch_stats)
    with _FrozenBuffers(model):
        eig = _power_iteration(model, batches, iters, generator, crit, arch, tol)
        if largest and eig < 0:
            eig += _power_iteration(model, batches, iters, generator, crit, arch, tol, eig)
    model.train(was)
    return eig


def _power_iteration(
    model: Supernet,
    batches: Sequence[Batch],
    iters: int,
    generator: torch.Generator | None,
    crit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    arch: list[torch.nn.Parameter],
    tol: float = 0.0,
    shift: float = 0.0,
) -> float:
    # power iteration on H - shift·I
    v = [rng.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype) for a in arch]

    def hvp(vec: list[torch.Tensor]) -> list[torch.Tensor]:
        total = [torch.zeros_like(a) for a in arch]
        for x, y in batches:
            loss = crit(model(x), y)
            g = torch.autograd.grad(loss, arch, create_graph=True, allow_unused=True)
            g = tuple(torch.zeros_like(a) if gi is None else gi for a, gi in zip(arch, g))
            dot = torch.stack([(gi * vi).sum() for gi, vi in zip(g, vec)]).sum()
            hv = torch.autograd.grad(dot, arch, allow_unused=True)
            for t, h in zip(total, hv):
                if h is not None:
                    t.add_(h.detach() / len(batches))
        if shift:
            for t, vi in zip(total, vec):
                t.sub_(shift * vi)
        return total

    eig = 0.0
    for i in range(check_int(iters, "iters")):
        norm = torch.sqrt(sum((t * t).sum() for t in v))  # type: ignore[arg-type]
        v = [t / norm for t in v]
        hv = hvp(v)
        prev, eig = eig, float(sum((a * b).sum() for a, b in zip(hv, v)))
        v = hv
        if tol > 0 and i > 0 and abs(eig - prev) <= tol * abs(eig):
            break
    return eig
