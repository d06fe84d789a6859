"""sharpDARTS (Hundt, Jain & Hager, 2019): faster and more accurate differentiable search.

Four pieces, each usable alone:

- **Cosine Power Annealing** (:func:`cosine_power_annealing`): the learning rate of epoch
  ``e = 1..E`` is ``lr_e = min + v_e (max − min)`` with ``c_e = (1 + cos(π e / E)) / 2`` and
  ``v = p^(c + 1)`` min–max normalised over the epochs, so the first epoch runs at ``max``, the
  last at ``min``, and a larger power ``p`` spends fewer epochs at high rates. ``p = 1`` (the
  ``p → 1`` limit) is min–max normalised cosine annealing. An optional linear warm-up precedes it.
- **SharpSepConv** (:class:`~torchloom.nas.space.SharpSepConv`, registered as
  ``sharp_sep_conv_3x3/5x5``, plus the wide ``flood_conv_3x3`` and narrow ``choke_conv_3x3``
  variants registered here): one block of ReLU, depthwise, 1×1, BN, ReLU, depthwise, 1×1, BN.
- **Max-W weighting** (:class:`~torchloom.nas.space.MaxWMixing`):
  ``Σ_i (1 − max_j w_j + w_i) op_i(x)`` with ``w = softmax(α)``.
- **Differentiable Hyperparameter Grid Search** (:class:`HyperCuboid`): a graph whose nodes are
  the points of a grid (layer × number of stride-2 reductions so far × channel size); every
  node mixes, with softmax weights over its incoming edges, a SharpSepConv from each node of
  the previous layer it can be reached from. :meth:`HyperCuboid.best_path` reads the
  hyperparameters out as the maximum-weight path (Viterbi over the log-weights).

:class:`SharpDARTS` is first-order DARTS with the Cosine Power Annealing weight schedule; give
it a supernet built with ``mixing=MaxWMixing()`` and ``ops=SHARP_PRIMITIVES``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchloom.core.checks import check_int, check_ndim, check_positive
from torchloom.nas.darts import DARTS
from torchloom.nas.space import SharpSepConv, available_ops, register_op

__all__ = [
    "SHARP_PRIMITIVES",
    "HyperCuboid",
    "HyperPath",
    "SharpDARTS",
    "cosine_power_annealing",
]


def _register() -> None:
    specs = {
        "flood_conv_3x3": (3, 1, 1, 4.0),
        "choke_conv_3x3": (3, 1, 1, 0.25),
        "dil_flood_conv_3x3": (3, 2, 2, 4.0),
    }
    for name, (k, pad, dil, mult) in specs.items():
        if name in available_ops():
            continue

        def factory(
            C: int,
            stride: int,
            affine: bool,
            k: int = k,
            pad: int = pad,
            dil: int = dil,
            mult: float = mult,
        ) -> nn.Module:
            return SharpSepConv(C, C, k, stride, pad, dil, affine, mid_mult=mult)

        register_op(name, factory)


_register()

SHARP_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sharp_sep_conv_3x3",
    "sharp_sep_conv_5x5",
    "flood_conv_3x3",
    "dil_flood_conv_3x3",
    "choke_conv_3x3",
)
"""A sharpDARTS-style search space: SharpSepConv in place of DARTS's SepConv/DilConv."""


def cosine_power_annealing(
    epochs: int,
    max_lr: float = 0.025,
    min_lr: float = 1e-4,
    power: float = 10.0,
    warmup_epochs: int = 0,
    warmup_lr: float | None = None,
) -> list[float]:
    """The Cosine Power Annealing schedule, one learning rate per epoch.

    ``c_e = (1 + cos(π e / E)) / 2`` for ``e = 1..E`` (``E = epochs − warmup_epochs``),
    ``v_e = p^(c_e + 1)`` min–max normalised over ``e`` (``v = c`` normalised when ``p = 1``),
    ``lr_e = min_lr + v_e (max_lr − min_lr)``. A warm-up, if asked, rises linearly from
    ``warmup_lr`` (default ``min_lr``) towards ``max_lr`` first.

    Args:
        epochs: total number of epochs (warm-up included).
        max_lr: the first (post-warm-up) learning rate.
        min_lr: the last learning rate.
        power: the power ``p ≥ 1``; 1 gives cosine annealing.
        warmup_epochs: linear warm-up epochs.
        warmup_lr: the warm-up's starting learning rate.

    Returns:
        ``epochs`` learning rates.
    """
    epochs = check_int(epochs, "epochs")
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)
    if warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs must be < epochs={epochs}, got {warmup_epochs}")
    max_lr = check_positive(max_lr, "max_lr")
    min_lr = check_positive(min_lr, "min_lr", strict=False)
    if min_lr > max_lr:
        raise ValueError(f"min_lr must be <= max_lr={max_lr}, got {min_lr}")
    power = check_positive(power, "power")
    if power < 1.0:
        raise ValueError(f"power must be >= 1, got {power}")
    n = epochs - warmup_epochs
    e = torch.arange(1, n + 1, dtype=torch.float64)
    c = (1.0 + torch.cos(math.pi * e / n)) / 2.0
    v = c if power == 1.0 else torch.pow(torch.tensor(power, dtype=torch.float64), c + 1.0)
    span = v.max() - v.min()
    v = (v - v.min()) / span if span > 0 else torch.ones_like(v)
    lrs = (min_lr + v * (max_lr - min_lr)).tolist()
    start = min_lr if warmup_lr is None else check_positive(warmup_lr, "warmup_lr", strict=False)
    warm = [start + (max_lr - start) * i / warmup_epochs for i in range(warmup_epochs)]
    return [*warm, *lrs]


class SharpDARTS(DARTS):
    """DARTS with the Cosine Power Annealing weight schedule (sharpDARTS's search).

    Args:
        power: Cosine Power Annealing power ``p``.
        warmup_epochs: linear warm-up epochs of the weight learning rate.
        kwargs: :class:`~torchloom.nas.darts.DARTS` arguments (``order``, learning rates, ...);
            ``w_lr`` is the schedule's maximum and ``w_lr_min`` its minimum.
    """

    def __init__(self, power: float = 10.0, warmup_epochs: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.power = check_positive(power, "power")
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)

    def lr_at(self, epoch: int) -> float:
        """The Cosine Power Annealing rate of ``epoch`` (0-based).

        Args:
            epoch: 0-based epoch.

        Returns:
            The learning rate.
        """
        sched = cosine_power_annealing(
            max(self.epochs, self.warmup_epochs + 1),
            self.w_lr,
            self.w_lr_min,
            self.power,
            self.warmup_epochs,
        )
        return sched[min(epoch, len(sched) - 1)]


# --------------------------------------------------------------------------- HyperCuboid


@dataclass(frozen=True)
class HyperPath:
    """A path through a :class:`HyperCuboid`: per layer its stride and channel count.

    Attributes:
        strides: stride of each layer (1 or 2).
        channels: output channels of each layer.
        log_weight: sum of the log-weights of the path's edges.
    """

    strides: tuple[int, ...]
    channels: tuple[int, ...]
    log_weight: float


class HyperCuboid(nn.Module):
    """Differentiable Hyperparameter Grid Search over layer × stride × channel size.

    Node ``(l, r, c)`` of layer ``l = 1..L`` holds a feature map with ``channels[c]`` channels
    after ``r`` stride-2 reductions. Its value is ``Σ_(r', c') softmax(α_(l, r, c))_(r', c') ·
    SharpSepConv(x_(l−1, r', c'))`` over the nodes of layer ``l − 1`` that reach it
    (``r' = r`` with stride 1, ``r' = r − 1`` with stride 2). Layer 0 is a stem per channel size;
    the output mixes a classifier on every last-layer node with ``softmax(α_out)``.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        layers: searched layers ``L``.
        channels: candidate channel sizes.
        max_reductions: most stride-2 layers on a path.

    Shapes:
        x: ``(B, in_channels, H, W)`` with ``H, W`` divisible by ``2^max_reductions``;
        output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        layers: int = 3,
        channels: Sequence[int] = (8, 16),
        max_reductions: int = 2,
    ) -> None:
        super().__init__()
        self.layers = check_int(layers, "layers")
        self.channels = tuple(check_int(c, "channels") for c in channels)
        if not self.channels:
            raise ValueError("channels must hold at least one size")
        self.max_reductions = check_int(max_reductions, "max_reductions", minimum=0)
        self.stems = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
            for c in self.channels
        )
        self.blocks = nn.ModuleDict()
        self.alphas = nn.ParameterDict()
        for layer in range(1, layers + 1):
            for r, c in self.nodes(layer):
                ins = self.inputs(layer, r)
                for r0, c0 in ins:
                    stride = 2 if r0 < r else 1
                    self.blocks[self._key(layer, r, c, r0, c0)] = SharpSepConv(
                        self.channels[c0], self.channels[c], 3, stride, 1, 1, True
                    )
                self.alphas[f"{layer}_{r}_{c}"] = nn.Parameter(torch.zeros(len(ins)))
        last = self.nodes(layers)
        self.heads = nn.ModuleList(nn.Linear(self.channels[c], num_classes) for _, c in last)
        self.alpha_out = nn.Parameter(torch.zeros(len(last)))

    @staticmethod
    def _key(layer: int, r: int, c: int, r0: int, c0: int) -> str:
        return f"{layer}_{r}_{c}_from_{r0}_{c0}"

    def nodes(self, layer: int) -> list[tuple[int, int]]:
        """Grid points ``(reductions, channel_index)`` of ``layer`` (0 is the stem layer).

        Args:
            layer: layer index.

        Returns:
            The nodes.
        """
        return [
            (r, c)
            for r in range(min(layer, self.max_reductions) + 1)
            for c in range(len(self.channels))
        ]

    def inputs(self, layer: int, r: int) -> list[tuple[int, int]]:
        """Nodes of ``layer − 1`` with an edge into a node of ``layer`` with ``r`` reductions.

        Args:
            layer: layer index ``≥ 1``.
            r: reductions of the target node.

        Returns:
            ``(r0, c0)`` pairs, in the order of the node's ``α``.
        """
        return [(r0, c0) for r0, c0 in self.nodes(layer - 1) if r0 in (r, r - 1)]

    def arch_parameters(self) -> list[nn.Parameter]:
        """Edge logits of every node and the output logits.

        Returns:
            The architecture parameters.
        """
        return [*self.alphas.values(), self.alpha_out]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture logits.

        Returns:
            The weights.
        """
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the mixed grid.

        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            ``(B, num_classes)``.
        """
        check_ndim(x, "x", 4, "(B, C, H, W)")
        k = 2**self.max_reductions
        if x.shape[-1] % k or x.shape[-2] % k:
            raise ValueError(f"x spatial size must be divisible by {k}, got {tuple(x.shape)}")
        states = {(0, c): stem(x) for c, stem in enumerate(self.stems)}
        for layer in range(1, self.layers + 1):
            new = {}
            for r, c in self.nodes(layer):
                ins = self.inputs(layer, r)
                w = self.alphas[f"{layer}_{r}_{c}"].softmax(-1)
                new[(r, c)] = sum(
                    w[i] * self.blocks[self._key(layer, r, c, r0, c0)](states[(r0, c0)])
                    for i, (r0, c0) in enumerate(ins)
                )
            states = new
        w_out = self.alpha_out.softmax(-1)
        logits = [
            head(states[node].mean(dim=(-2, -1)))
            for head, node in zip(self.heads, self.nodes(self.layers))
        ]
        out: torch.Tensor = sum(w_out[i] * z for i, z in enumerate(logits))  # type: ignore[assignment]
        return out

    def best_path(self) -> HyperPath:
        """The maximum-weight path: ``argmax Σ log softmax`` over the path's edges and output.

        Returns:
            The :class:`HyperPath` (strides and channels per layer).
        """
        with torch.no_grad():
            # score[node] = best log-weight of a path from the stems to the node
            score: dict[tuple[int, int], float] = {n: 0.0 for n in self.nodes(0)}
            back: list[dict[tuple[int, int], tuple[int, int]]] = []
            for layer in range(1, self.layers + 1):
                new: dict[tuple[int, int], float] = {}
                arg: dict[tuple[int, int], tuple[int, int]] = {}
                for r, c in self.nodes(layer):
                    ins = self.inputs(layer, r)
                    logw = self.alphas[f"{layer}_{r}_{c}"].log_softmax(-1)
                    cand = [score[n] + float(logw[i]) for i, n in enumerate(ins)]
                    best = max(range(len(ins)), key=lambda i: cand[i])
                    new[(r, c)], arg[(r, c)] = cand[best], ins[best]
                score = new
                back.append(arg)
            out = self.alpha_out.log_softmax(-1)
            last = self.nodes(self.layers)
            end = max(range(len(last)), key=lambda i: score[last[i]] + float(out[i]))
            total = score[last[end]] + float(out[end])
            node = last[end]
            path = [node]
            for arg in reversed(back):
                node = arg[node]
                path.append(node)
            path.reverse()
        strides = tuple(2 if b[0] > a[0] else 1 for a, b in itertools.pairwise(path))
        chans = tuple(self.channels[c] for _, c in path[1:])
        return HyperPath(strides, chans, total)

    def path_log_weight(self, strides: Sequence[int], channels: Sequence[int], stem: int) -> float:
        """Log-weight of one explicit path (for checking :meth:`best_path` by enumeration).

        Args:
            strides: stride per layer.
            channels: channel count per layer.
            stem: channel index of the stem node the path starts from.

        Returns:
            ``Σ log softmax`` over the path's edges and its output logit.
        """
        with torch.no_grad():
            node = (0, stem)
            total = 0.0
            for layer, (s, ch) in enumerate(zip(strides, channels), start=1):
                target = (node[0] + (1 if s == 2 else 0), self.channels.index(ch))
                ins = self.inputs(layer, target[0])
                total += float(
                    self.alphas[f"{layer}_{target[0]}_{target[1]}"].log_softmax(-1)[ins.index(node)]
                )
                node = target
            total += float(self.alpha_out.log_softmax(-1)[self.nodes(self.layers).index(node)])
        return total
