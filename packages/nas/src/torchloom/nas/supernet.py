"""The DARTS supernet: a stack of search cells sharing two sets of architecture logits.

:class:`Supernet` follows Liu et al. (2019): a 3×3 convolution stem, ``layers`` search cells
(reduction cells at ``layers // 3`` and ``2 · layers // 3`` unless chosen otherwise), global
average pooling and a linear classifier. All normal cells share ``alpha_normal`` ``(E, N)`` and
all reduction cells ``alpha_reduce``; the mixing rule (:mod:`torchloom.nas.space`) turns them
into edge weights once per forward. Architecture parameters and weights are kept apart:
:meth:`Supernet.arch_parameters` and :meth:`Supernet.weight_parameters`.

Sizes: 8×8 digits (``in_channels=1``, the default) and 32×32 CIFAR (``in_channels=3``) both
work; each reduction halves the spatial size, so an 8×8 input supports up to three reductions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from torchloom.core.checks import check_int, check_ndim
from torchloom.nas.space import (
    PRIMITIVES,
    MixingRule,
    Mixture,
    SearchCell,
    SoftmaxMixing,
    _check_ops,
    as_mixture,
    num_edges,
)

__all__ = ["CELL_TYPES", "Supernet", "default_reductions"]

CELL_TYPES: tuple[str, str] = ("normal", "reduce")
"""The two cell types; keys of :meth:`Supernet.alphas` and of the ``weights`` mapping."""


def default_reductions(layers: int) -> tuple[int, ...]:
    """DARTS's reduction positions: cells ``layers // 3`` and ``2 · layers // 3`` (deduplicated).

    Args:
        layers: number of cells.

    Returns:
        Sorted indices of the reduction cells.
    """
    check_int(layers, "layers")
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def _reduction_cells(layers: int, reductions: Iterable[int] | None) -> tuple[int, ...]:
    """Validated, sorted reduction-cell indices (``None``: :func:`default_reductions`)."""
    red = default_reductions(layers) if reductions is None else tuple(reductions)
    if any(not isinstance(r, int) or not 0 <= r < layers for r in red):
        raise ValueError(f"reductions must be cell indices in [0, {layers}), got {red}")
    return tuple(sorted(set(red)))


def _stem(in_channels: int, channels: int) -> nn.Sequential:
    """DARTS stem: 3×3 conv + BatchNorm, shared by the supernet and the discrete network."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
    )


class Supernet(nn.Module):
    """DARTS supernet for image classification.

    Args:
        C: channels of each node in the first cell (doubled at every reduction).
        num_classes: classifier outputs.
        layers: number of cells.
        steps: intermediate nodes per cell (``N ≥ 1``, two inputs minimum per node).
        multiplier: nodes concatenated into a cell's output (default ``steps``).
        stem_multiplier: the stem outputs ``stem_multiplier · C`` channels.
        in_channels: image channels (1 for digits, 3 for CIFAR).
        ops: candidate op names (see :func:`torchloom.nas.space.available_ops`).
        mixing: a mixing rule (default :class:`~torchloom.nas.space.SoftmaxMixing`).
        reductions: indices of reduction cells (default :func:`default_reductions`).
        pool_bn: non-affine BatchNorm after pooling ops, as DARTS does during search.
        alpha_init_std: architecture logits start at ``std · N(0, 1)`` (DARTS: 1e-3).
        generator: randomness for the architecture initialisation.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        C: int = 8,
        num_classes: int = 10,
        layers: int = 3,
        steps: int = 4,
        multiplier: int | None = None,
        stem_multiplier: int = 3,
        in_channels: int = 1,
        ops: Sequence[str] = PRIMITIVES,
        mixing: MixingRule | None = None,
        reductions: Sequence[int] | None = None,
        pool_bn: bool = True,
        alpha_init_std: float = 1e-3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.C = check_int(C, "C")
        self.num_classes = check_int(num_classes, "num_classes")
        self.layers = check_int(layers, "layers")
        self.steps = check_int(steps, "steps")
        self.multiplier = check_int(steps if multiplier is None else multiplier, "multiplier")
        self.stem_multiplier = check_int(stem_multiplier, "stem_multiplier")
        self.in_channels = check_int(in_channels, "in_channels")
        self.op_names = _check_ops(ops)
        self.pool_bn = bool(pool_bn)
        self.mixing: MixingRule = SoftmaxMixing() if mixing is None else mixing
        if not callable(self.mixing):
            raise TypeError(f"mixing must be callable, got {type(self.mixing).__name__}")
        self.reductions = _reduction_cells(layers, reductions)

        C_curr = stem_multiplier * C
        self.stem = _stem(in_channels, C_curr)
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            cell = SearchCell(
                steps,
                self.multiplier,
                C_pp,
                C_p,
                C_curr,
                reduction,
                reduction_prev,
                self.op_names,
                pool_bn=self.pool_bn,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, self.multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

        E, N = num_edges(steps), len(self.op_names)
        std = float(alpha_init_std)
        self.alpha_normal = nn.Parameter(std * torch.randn(E, N, generator=generator))
        self.alpha_reduce = nn.Parameter(std * torch.randn(E, N, generator=generator))

    # ------------------------------------------------------------------ parameters

    def alphas(self) -> dict[str, nn.Parameter]:
        """The architecture logits by cell type.

        Returns:
            ``{"normal": (E, N), "reduce": (E, N)}``.
        """
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters ``[alpha_normal, alpha_reduce]``.

        Returns:
            The two ``(E, N)`` logit tensors.
        """
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except the architecture logits.

        Returns:
            An iterator over the network weights.
        """
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    @property
    def num_edges(self) -> int:
        """Edges per cell ``E``."""
        return num_edges(self.steps)

    # ------------------------------------------------------------------ forward

    def mixtures(self) -> dict[str, Mixture]:
        """Apply the mixing rule to each cell type's logits.

        Returns:
            ``{"normal": Mixture, "reduce": Mixture}`` with weights ``(E, N)``.
        """
        shape = (self.num_edges, len(self.op_names))
        return {
            kind: as_mixture(self.mixing(alpha), shape) for kind, alpha in self.alphas().items()
        }

    def forward(
        self,
        x: torch.Tensor,
        weights: Mapping[str, Mixture | torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Class logits of the supernet.

        Args:
            x: images ``(B, in_channels, H, W)``.
            weights: per cell type (``"normal"``/``"reduce"``) a :class:`Mixture` or an ``(E, N)``
                weight tensor overriding the mixing rule (e.g. one-hot weights restrict the
                supernet to a discrete architecture; DARTS-PT zeroes masked ops). Missing types
                use the mixing rule.

        Returns:
            ``(B, num_classes)`` logits.
        """
        check_ndim(x, "x", 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels (B, C, H, W), got {tuple(x.shape)}"
            )
        mixes: dict[str, Mixture] = {}
        shape = (self.num_edges, len(self.op_names))
        for kind, alpha in self.alphas().items():
            if weights is not None and kind in weights:
                given = as_mixture(weights[kind], shape)
                # keep the mixture's type and extra fields (e.g. PathSample.lazy)
                mixes[kind] = dataclasses.replace(given, weights=given.weights.to(x))
            else:
                mixes[kind] = as_mixture(self.mixing(alpha), shape)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            mix = mixes["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell(s0, s1, mix)
        out: torch.Tensor = self.classifier(self.global_pooling(s1).flatten(1))
        return out

    def extra_repr(self) -> str:
        return (
            f"C={self.C}, layers={self.layers}, steps={self.steps}, "
            f"reductions={self.reductions}, ops={list(self.op_names)}"
        )
