"""Quantized distillation and differentiable quantization (Polino, Pascanu & Alistarh, ICLR 2018).

*Quantized distillation* (Algorithm 1) trains a student whose weights are quantised in every
forward pass while full-precision shadow weights ``w`` receive the update:
``w ← w − η ∇_{Q(w)} L(Q(w))`` with the distillation loss

    L = α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)

(``α = 0.7``, ``T`` configurable; ``t``/``s`` teacher/student logits).

*Differentiable quantization* (Algorithm 2) keeps the weights fixed and learns, per weight
tensor, the quantisation points ``p`` (in the bucket-scaled ``[0, 1]`` space, initialised
uniformly or at quantiles of the scaled weights) by gradient descent on the same loss, with
``∂L/∂p_j = Σ_{i: Q(v)_i = p_j} α_i ∂L/∂Q(v)_i``; the points are re-sorted after every step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from torchloom.core.checks import check_floating, check_ndim, check_positive, check_probability
from torchloom.quantize.uniform import (
    _WEIGHTED,
    Remainder,
    _check_bits,
    fake_quantize_model,
    freeze_quantization,
    nonuniform_quantize,
    quantized_size_bits,
    scale_buckets,
)

__all__ = [
    "DifferentiableQuantization",
    "DistillationLoss",
    "LearnedPointsQuantizer",
    "QuantizedDistillation",
    "distillation_loss",
]

PointInit = Literal["uniform", "quantiles"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """``α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, y)``, batch-averaged.

    The ``T²`` keeps the soft term's gradient on the scale of the hard term (Hinton et al.).

    Shapes: logits ``(B, K)``, ``targets`` ``(B,)`` integer classes; returns a scalar.
    """
    check_floating(student_logits, "student_logits")
    check_floating(teacher_logits, "teacher_logits")
    check_ndim(student_logits, "student_logits", 2, "(B, K)")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits must have the shape of student_logits {tuple(student_logits.shape)}"
            f", got {tuple(teacher_logits.shape)}"
        )
    if targets.shape != student_logits.shape[:1] or targets.is_floating_point():
        raise ValueError(
            f"targets must be integer classes of shape ({student_logits.shape[0]},), got "
            f"{targets.dtype} {tuple(targets.shape)}"
        )
    t = check_positive(temperature, "temperature")
    a = check_probability(alpha, "alpha")
    log_s = F.log_softmax(student_logits / t, dim=1)
    log_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    soft = F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * (t * t)
    hard = F.cross_entropy(student_logits, targets)
    return a * soft + (1.0 - a) * hard


class DistillationLoss(nn.Module):
    """Module form of :func:`distillation_loss`: ``forward(student_logits, teacher_logits,
    targets)``."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.7) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.alpha = check_probability(alpha, "alpha")

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return distillation_loss(
            student_logits,
            teacher_logits,
            targets,
            temperature=self.temperature,
            alpha=self.alpha,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}, alpha={self.alpha:g}"


class _Distiller:
    """Teacher forward, distillation loss, a NaN-guarded optimiser step."""

    student: nn.Module
    teacher: nn.Module
    criterion: DistillationLoss

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The distillation loss of the (quantised) student on a batch ``(x, y)``."""
        self.teacher.eval()
        with torch.no_grad():
            t = self.teacher(x)
        return self.criterion(self.student(x), t, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        self.student.train()
        loss = self.loss(x, y)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(f"distillation loss is {loss.item()}; step not applied")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())


class QuantizedDistillation(_Distiller):
    """Quantized distillation (Polino et al., Algorithm 1).

    ``student`` is modified in place: every ``nn.Linear``/``nn.Conv*d`` weight (except
    ``exclude``) becomes a full-precision shadow tensor (``parametrizations.weight.original``)
    seen through bucketed uniform quantisation with a straight-through gradient, so an optimiser
    over ``student.parameters()`` updates the shadow weights with the gradient taken at the
    quantised weights.

    Args:
        student, teacher: networks mapping ``(B, *)`` inputs to ``(B, K)`` logits.
        bits, bucket_size, stochastic: the quantiser (stochastic rounding in training only).
        temperature, alpha: the distillation loss.
        exclude: module names of the student kept in full precision.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        bits: int,
        bucket_size: int | None = 256,
        stochastic: bool = False,
        temperature: float = 4.0,
        alpha: float = 0.7,
        exclude: tuple[str, ...] = (),
    ) -> None:
        _check_bits(bits)
        self.criterion = DistillationLoss(temperature, alpha)
        self.teacher = teacher
        self.student = fake_quantize_model(
            student, bits, bucket_size, stochastic=stochastic, exclude=exclude
        )

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One step of Algorithm 1 on the batch; returns the loss (raises on NaN/Inf)."""
        return self._step(x, y, optimizer)

    def export(self) -> nn.Module:
        """A plain copy of the student holding the (deterministically) quantised weights."""
        return freeze_quantization(copy.deepcopy(self.student))


class LearnedPointsQuantizer(nn.Module):
    """Non-uniform quantiser with learnable points ``p`` (``(2^bits,)``, bucket-scaled space).

    ``forward(w) = α p_{j(i)} + β`` per bucket (nearest point), differentiable in ``p`` and
    straight-through in ``w``. Build it from the tensor it will quantise so that ``init`` can
    place the points: ``"uniform"`` (``j/(s−1)``) or ``"quantiles"`` (the scaled weights'
    ``(j + ½)/s`` quantiles).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bits: int,
        bucket_size: int | None = 256,
        *,
        init: PointInit = "quantiles",
        remainder: Remainder = "partial",
    ) -> None:
        super().__init__()
        self.bits = _check_bits(bits)
        check_floating(weight, "weight")
        s = 2**bits
        if init == "uniform":
            pts = torch.linspace(0.0, 1.0, s, dtype=weight.dtype, device=weight.device)
        elif init == "quantiles":
            v, _, _ = scale_buckets(weight.detach(), bucket_size, remainder)
            qs = (torch.arange(s, dtype=v.dtype, device=v.device) + 0.5) / s
            pts = torch.quantile(v.reshape(-1), qs)
        else:
            raise ValueError(f"init must be 'uniform' or 'quantiles', got {init!r}")
        self.points = nn.Parameter(pts)
        self.bucket_size = bucket_size
        self.remainder: Remainder = remainder

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return nonuniform_quantize(w, self.points, self.bucket_size, remainder=self.remainder)

    @torch.no_grad()
    def sort_points_(self) -> None:
        """Re-sort the points in place (after a gradient step, as in the paper)."""
        self.points.copy_(self.points.sort().values)

    def storage_bits(self, numel: int, scale_bits: int = 32) -> int:
        """Codes, ``(α, β)`` per bucket and the ``2^bits`` points."""
        return quantized_size_bits(
            numel, self.bits, self.bucket_size, scale_bits, n_points=self.points.numel()
        )

    def extra_repr(self) -> str:
        return f"bits={self.bits}, bucket_size={self.bucket_size}"


class DifferentiableQuantization(_Distiller):
    """Differentiable quantization (Polino et al., Algorithm 2).

    Every ``nn.Linear``/``nn.Conv*d`` weight of ``student`` (in place, except ``exclude``) is
    quantised by its own :class:`LearnedPointsQuantizer`. Optimise :meth:`point_parameters` with
    :meth:`step`: the weights stay fixed, the points move to lower the distillation loss and are
    re-sorted after each step.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        bits: int,
        bucket_size: int | None = 256,
        init: PointInit = "quantiles",
        temperature: float = 4.0,
        alpha: float = 0.7,
        exclude: tuple[str, ...] = (),
    ) -> None:
        _check_bits(bits)
        names = {n for n, _ in student.named_modules()}
        unknown = set(exclude) - names
        if unknown:
            raise ValueError(f"exclude names modules that do not exist: {sorted(unknown)}")
        self.criterion = DistillationLoss(temperature, alpha)
        self.teacher = teacher
        self.quantizers: list[LearnedPointsQuantizer] = []
        for name, mod in list(student.named_modules()):
            if name in exclude or not isinstance(mod, _WEIGHTED):
                continue
            if parametrize.is_parametrized(mod, "weight"):
                raise ValueError(f"module {name!r} is already parametrised")
            q = LearnedPointsQuantizer(mod.weight, bits, bucket_size, init=init)
            parametrize.register_parametrization(mod, "weight", q)
            self.quantizers.append(q)
        if not self.quantizers:
            raise ValueError("student has no nn.Linear/nn.Conv*d weight to quantise")
        self.student = student

    def point_parameters(self) -> Iterator[nn.Parameter]:
        """The learnable quantisation points, one tensor per quantised weight."""
        for q in self.quantizers:
            yield q.points

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """One step of Algorithm 2 on the batch, then re-sort the points; returns the loss."""
        loss = self._step(x, y, optimizer)
        for q in self.quantizers:
            q.sort_points_()
        return loss

    def export(self) -> nn.Module:
        """A plain copy of the student holding the quantised weights."""
        return freeze_quantization(copy.deepcopy(self.student))
