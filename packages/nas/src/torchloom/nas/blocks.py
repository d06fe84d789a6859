"""The layer-wise chain search space of ProxylessNAS and FBNet: MBConv candidates per layer.

ProxylessNAS (Cai et al. 2019, Sec. 4) and FBNet (Wu et al. 2019, Sec. 3.1) fix the macro
structure of a MobileNetV2-like network and search the *operation of every layer*: a mobile
inverted bottleneck (MBConv) with kernel size ``k ∈ {3, 5, 7}`` and expansion ratio
``e ∈ {3, 6}``, or ``zero`` (the layer is skipped: with the residual connection the block becomes
the identity). :class:`ChainSupernet` is that space at toy scale: a stem, stages of searchable
residual layers (:class:`MixedLayer`) joined by fixed strided transitions, and a classifier.

Op names are ``"mb_k{k}_e{e}"`` (any odd ``k`` and ``e ≥ 1``) and ``"zero"``;
:data:`PROXYLESS_OPS` is the paper's set. The architecture logits ``alpha`` are ``(L, N)``, one
row per searchable layer, turned into per-layer weights by a mixing rule (the same rules as the
DARTS supernet: softmax, Gumbel, ProxylessNAS binary paths). :func:`build_chain` builds the
discrete network of a chosen op per layer; its output equals the supernet's under one-hot
weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from torchloom.core.checks import check_int, check_ndim
from torchloom.nas.space import mix_ops

__all__ = [
    "PROXYLESS_OPS",
    "ChainNet",
    "ChainSupernet",
    "MBConv",
    "MixedLayer",
    "ZeroOp",
    "build_chain",
    "make_chain_op",
    "mbconv_ops",
    "search_chain",
]

PROXYLESS_OPS: tuple[str, ...] = (
    "mb_k3_e3",
    "mb_k3_e6",
    "mb_k5_e3",
    "mb_k5_e6",
    "mb_k7_e3",
    "mb_k7_e6",
    "zero",
)
"""ProxylessNAS's candidates: MBConv k ∈ {3, 5, 7} × e ∈ {3, 6}, and zero (skip the layer)."""

_MB = re.compile(r"^mb_k(\d+)_e(\d+)$")


def mbconv_ops(kernels: Sequence[int] = (3, 5, 7), expansions: Sequence[int] = (3, 6)) -> list[str]:
    """Names of the MBConv candidates ``k × e`` (kernel-major order).

    Args:
        kernels: odd kernel sizes.
        expansions: expansion ratios ``≥ 1``.

    Returns:
        ``["mb_k{k}_e{e}" for k in kernels for e in expansions]``.
    """
    return [f"mb_k{k}_e{e}" for k in kernels for e in expansions]


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2): 1×1 expand → BN → ReLU6 → depthwise k×k
    (strided) → BN → ReLU6 → 1×1 project → BN. The expansion conv is omitted when ``e = 1``.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: odd depthwise kernel size.
        expansion: expansion ratio ``e`` (hidden width ``e · C_in``).
        stride: depthwise stride.
        affine: whether BatchNorms learn scale and shift.

    Shapes:
        x: ``(B, C_in, H, W)``; output: ``(B, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        expansion: int,
        stride: int = 1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        check_int(C_in, "C_in")
        check_int(C_out, "C_out")
        check_int(kernel_size, "kernel_size")
        check_int(expansion, "expansion")
        check_int(stride, "stride")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        hidden = C_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [
                nn.Conv2d(C_in, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden, affine=affine),
                nn.ReLU6(inplace=False),
            ]
        layers += [
            nn.Conv2d(
                hidden,
                hidden,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=hidden,
                bias=False,
            ),
            nn.BatchNorm2d(hidden, affine=affine),
            nn.ReLU6(inplace=False),
            nn.Conv2d(hidden, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, C_in, H, W)``.

        Returns:
            ``(B, C_out, H', W')``.
        """
        out: torch.Tensor = self.body(x)
        return out


class ZeroOp(nn.Module):
    """The ``zero`` candidate: the layer contributes nothing (a residual layer becomes identity).

    Shapes:
        x: ``(B, C, H, W)``; output: zeros ``(B, C, H, W)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zeros like ``x``.

        Args:
            x: ``(B, C, H, W)``.

        Returns:
            ``torch.zeros_like(x)``.
        """
        return torch.zeros_like(x)


def make_chain_op(name: str, C: int, affine: bool = True) -> nn.Module:
    """Instantiate a chain-space candidate at stride 1 with ``C`` channels in and out.

    Args:
        name: ``"mb_k{k}_e{e}"`` or ``"zero"``.
        C: channels.
        affine: BatchNorm affine flag.

    Returns:
        The op, ``(B, C, H, W) -> (B, C, H, W)``.

    Raises:
        ValueError: on an unknown name.
    """
    if name == "zero":
        return ZeroOp()
    m = _MB.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"unknown chain op {name!r}; expected 'zero' or 'mb_k{{k}}_e{{e}}' "
            f"(e.g. {list(PROXYLESS_OPS)})"
        )
    return MBConv(C, C, int(m.group(1)), int(m.group(2)), 1, affine)


def _check_chain_ops(ops: Sequence[str]) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
        raise ValueError(f"ops must be a non-empty sequence of op names, got {ops!r}")
    names = tuple(ops)
    if len(set(names)) != len(names):
        raise ValueError(f"ops must not repeat a name, got {list(names)}")
    for n in names:
        if n != "zero" and (not isinstance(n, str) or _MB.match(n) is None):
            make_chain_op(n, 1)  # raises with the list of valid names
    return names


class MixedLayer(nn.Module):
    """A searchable residual layer: ``x + Σ_i w_i · op_i(x)`` over the candidates.

    ``active`` restricts the sum to some candidates (the others are not evaluated). ``lazy``
    names candidates whose output is only needed for the gradient of their (zero) weight, as in
    ProxylessNAS: they are recomputed in the backward pass without being stored (see
    :func:`torchloom.nas.space.mix_ops`).

    Args:
        C: channels.
        ops: candidate op names.
        affine: BatchNorm affine flag.

    Shapes:
        x: ``(B, C, H, W)``; weights: ``(N,)``; output: ``(B, C, H, W)``.
    """

    def __init__(self, C: int, ops: Sequence[str] = PROXYLESS_OPS, affine: bool = True) -> None:
        super().__init__()
        self.op_names = _check_chain_ops(ops)
        self.ops = nn.ModuleList(make_chain_op(n, C, affine) for n in self.op_names)

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        active: torch.Tensor | None = None,
        lazy: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Residual mixed output.

        Args:
            x: ``(B, C, H, W)``.
            weights: ``(N,)`` coefficients.
            active: ``(k,)`` indices of the candidates to evaluate, or ``None`` for all.
            lazy: ``(m,)`` indices whose weight gradient is computed in the backward only.

        Returns:
            ``(B, C, H, W)``.
        """
        return x + mix_ops(list(self.ops), x, weights, active, lazy)


def _stages(stages: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out = []
    if not stages:
        raise ValueError("stages must list at least one (channels, layers, stride)")
    for s in stages:
        if len(s) != 3:
            raise ValueError(f"each stage must be (channels, layers, stride), got {s!r}")
        c, n, st = s
        out.append(
            (
                check_int(c, "stage channels"),
                check_int(n, "stage layers"),
                check_int(st, "stage stride"),
            )
        )
    return out


class _ChainBody(nn.Module):
    """Stem, transitions and head shared by the supernet and the discrete chain network."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stem_channels: int,
        stages: Sequence[tuple[int, int, int]],
        layer: Callable[[int, int], nn.Module],
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        stem_channels = check_int(stem_channels, "stem_channels")
        self.stages = _stages(stages)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU6(inplace=False),
        )
        self.transitions = nn.ModuleList()
        self.layers = nn.ModuleList()
        self.stage_of: list[int] = []
        c_prev = stem_channels
        index = 0
        for s, (c, n, stride) in enumerate(self.stages):
            need = c != c_prev or stride != 1
            self.transitions.append(MBConv(c_prev, c, 3, 1, stride) if need else nn.Identity())
            for _ in range(n):
                self.layers.append(layer(index, c))
                self.stage_of.append(s)
                index += 1
            c_prev = c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def run(
        self, x: torch.Tensor, layer_fn: Callable[[int, nn.Module, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        check_ndim(x, "x", 4, "(B, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels (B, C, H, W), got {tuple(x.shape)}"
            )
        h = self.stem(x)
        stage = -1
        for i, layer in enumerate(self.layers):
            if self.stage_of[i] != stage:
                for s in range(stage + 1, self.stage_of[i] + 1):
                    h = self.transitions[s](h)
                stage = self.stage_of[i]
            h = layer_fn(i, layer, h)
        for s in range(stage + 1, len(self.stages)):
            h = self.transitions[s](h)
        out: torch.Tensor = self.classifier(self.pool(h).flatten(1))
        return out


def _as_row(mix: Any, i: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    weights = mix if isinstance(mix, torch.Tensor) else mix.weights
    active = None if isinstance(mix, torch.Tensor) else getattr(mix, "active", None)
    lazy = None if isinstance(mix, torch.Tensor) else getattr(mix, "lazy", None)
    return (
        weights[i],
        None if active is None else active[i],
        None if lazy is None else lazy[i],
    )


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(-1)


class ChainSupernet(nn.Module):
    """Layer-wise supernet (ProxylessNAS/FBNet space): stem, stages of :class:`MixedLayer`,
    classifier; one row of architecture logits per searchable layer.

    Args:
        in_channels: image channels (1 for digits).
        num_classes: classifier outputs.
        stem_channels: stem width.
        stages: ``(channels, searchable layers, stride)`` per stage; a fixed MBConv(k3, e1)
            transition enters a stage whose width or stride differs.
        ops: candidate op names (default :data:`PROXYLESS_OPS`).
        mixing: a rule ``logits (L, N) -> Mixture | Tensor`` (default softmax, i.e. DARTS).
        alpha_init_std: logits start at ``std · N(0, 1)``.
        generator: randomness of the logits' initialisation.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        stem_channels: int = 8,
        stages: Sequence[tuple[int, int, int]] = ((8, 2, 1), (16, 2, 2)),
        ops: Sequence[str] = PROXYLESS_OPS,
        mixing: Callable[[torch.Tensor], Any] | None = None,
        alpha_init_std: float = 1e-3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.op_names = _check_chain_ops(ops)
        self.body = _ChainBody(
            in_channels,
            num_classes,
            stem_channels,
            stages,
            lambda i, c: MixedLayer(c, self.op_names),
        )
        self.mixing: Callable[[torch.Tensor], Any] = _softmax if mixing is None else mixing
        if not callable(self.mixing):
            raise TypeError(f"mixing must be callable, got {type(self.mixing).__name__}")
        L, N = len(self.body.layers), len(self.op_names)
        self.alpha = nn.Parameter(float(alpha_init_std) * torch.randn(L, N, generator=generator))

    @property
    def num_layers(self) -> int:
        """Searchable layers ``L``."""
        return len(self.body.layers)

    def edge_names(self) -> list[str]:
        """Qualified names of the searchable layers, row order of ``alpha`` (latency-table
        keys, see :func:`torchloom.nas.latency.measure_latency_table`).

        Returns:
            ``["body.layers.0", ...]``.
        """
        return [f"body.layers.{i}" for i in range(self.num_layers)]

    def alphas(self) -> dict[str, nn.Parameter]:
        """The architecture logits, keyed like the DARTS supernet's.

        Returns:
            ``{"layers": alpha}`` with ``alpha`` ``(L, N)``.
        """
        return {"layers": self.alpha}

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters ``[alpha]``.

        Returns:
            One ``(L, N)`` tensor.
        """
        return [self.alpha]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except ``alpha``.

        Returns:
            An iterator over the network weights.
        """
        return (p for p in self.parameters() if p is not self.alpha)

    def probabilities(self) -> torch.Tensor:
        """``softmax(alpha)`` per layer.

        Returns:
            ``(L, N)``.
        """
        return self.alpha.softmax(-1)

    def derive(self) -> list[str]:
        """The most likely op of each layer.

        Returns:
            ``L`` op names.
        """
        return [self.op_names[int(i)] for i in self.alpha.argmax(-1).tolist()]

    def forward(
        self, x: torch.Tensor, weights: Mapping[str, Any] | Any | None = None
    ) -> torch.Tensor:
        """Class logits.

        Args:
            x: ``(B, in_channels, H, W)``.
            weights: an ``(L, N)`` weight tensor or a mixture (with ``weights``, optional
                ``active``/``lazy``), optionally under the key ``"layers"``; ``None`` applies the
                mixing rule to ``alpha``.

        Returns:
            ``(B, num_classes)``.
        """
        if isinstance(weights, Mapping):
            weights = weights.get("layers")
        mix = self.mixing(self.alpha) if weights is None else weights
        w = mix if isinstance(mix, torch.Tensor) else mix.weights
        if tuple(w.shape) != tuple(self.alpha.shape):
            raise ValueError(
                f"mixture weights must have shape {tuple(self.alpha.shape)}, got {tuple(w.shape)}"
            )

        def layer_fn(i: int, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
            wi, ai, li = _as_row(mix, i)
            out: torch.Tensor = layer(h, wi, ai, li)
            return out

        return self.body.run(x, layer_fn)


class _ChosenLayer(nn.Module):
    def __init__(self, C: int, op: str) -> None:
        super().__init__()
        self.op_name = op
        self.op = make_chain_op(op, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op_name == "zero":
            return x
        out: torch.Tensor = x + self.op(x)
        return out


class ChainNet(nn.Module):
    """The discrete network of a chain architecture (built by :func:`build_chain`).

    Args:
        choice: one op name per searchable layer (``"zero"`` makes the layer the identity).
        in_channels: image channels.
        num_classes: classifier outputs.
        stem_channels: stem width.
        stages: ``(channels, layers, stride)`` per stage, as in :class:`ChainSupernet`.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(
        self,
        choice: Sequence[str],
        in_channels: int,
        num_classes: int,
        stem_channels: int,
        stages: Sequence[tuple[int, int, int]],
    ) -> None:
        super().__init__()
        self.choice = tuple(choice)
        total = sum(n for _, n, _ in _stages(stages))
        if len(self.choice) != total:
            raise ValueError(f"choice must name {total} ops (one per layer), got {len(choice)}")
        self.body = _ChainBody(
            in_channels,
            num_classes,
            stem_channels,
            stages,
            lambda i, c: _ChosenLayer(c, self.choice[i]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, num_classes)``.
        """
        return self.body.run(x, lambda i, layer, h: layer(h))


def build_chain(
    choice: Sequence[str],
    supernet: ChainSupernet | None = None,
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    stem_channels: int = 8,
    stages: Sequence[tuple[int, int, int]] = ((8, 2, 1), (16, 2, 2)),
) -> ChainNet:
    """The discrete chain network with op ``choice[l]`` at layer ``l``.

    With ``supernet`` the sizes are taken from it and the weights copied (stem, transitions,
    head and each chosen op), so the result equals the supernet under one-hot weights;
    otherwise it is freshly initialised with the given sizes.

    Args:
        choice: one op name per searchable layer.
        supernet: copy sizes and weights from this supernet.
        in_channels: image channels (ignored with ``supernet``).
        num_classes: classes (ignored with ``supernet``).
        stem_channels: stem width (ignored with ``supernet``).
        stages: stage layout (ignored with ``supernet``).

    Returns:
        A :class:`ChainNet`.
    """
    if supernet is None:
        return ChainNet(choice, in_channels, num_classes, stem_channels, stages)
    body: _ChainBody = supernet.body
    stem_conv = body.stem[0]
    if not isinstance(stem_conv, nn.Conv2d):  # pragma: no cover - built by _ChainBody
        raise TypeError("unexpected stem")
    net = ChainNet(choice, body.in_channels, body.num_classes, stem_conv.out_channels, body.stages)
    for name in choice:
        if name not in supernet.op_names:
            raise ValueError(f"op {name!r} is not a candidate of the supernet {supernet.op_names}")
    net.body.stem.load_state_dict(body.stem.state_dict())
    net.body.transitions.load_state_dict(body.transitions.state_dict())
    net.body.classifier.load_state_dict(body.classifier.state_dict())
    for i, name in enumerate(choice):
        src_layer, dst_layer = body.layers[i], net.body.layers[i]
        if not isinstance(src_layer, MixedLayer) or not isinstance(dst_layer, _ChosenLayer):
            raise TypeError("unexpected layer types")  # pragma: no cover
        dst_layer.op.load_state_dict(src_layer.ops[supernet.op_names.index(name)].state_dict())
    return net


def search_chain(
    strategy: Any,
    model: ChainSupernet,
    train: Iterable[tuple[torch.Tensor, torch.Tensor]],
    val: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    *,
    progress: Callable[..., Iterator[Any]] | None = None,
) -> tuple[list[str], list[dict[str, float]]]:
    """Search on the layer-wise space: :func:`~torchloom.nas.search.search` (the one loop of
    every space, with checkpoints and DDP) returning ``(choice, history)``.

    Each training batch is paired with the next validation batch (cycled); the architecture is
    read out by :meth:`ChainSupernet.derive`.

    Args:
        strategy: e.g. :class:`~torchloom.nas.proxyless.ProxylessNAS` or
            :class:`~torchloom.nas.fbnet.FBNet`.
        model: the chain supernet.
        train: ``(x, y)`` training batches, iterated once per epoch.
        val: ``(x, y)`` validation batches.
        epochs: number of epochs.
        progress: optional ``progress(iterable, total=..., description=...)`` wrapper.

    Returns:
        ``(choice, history)``: one op name per layer and one dict of mean metrics per epoch.
    """
    from torchloom.nas.search import search

    result = search(strategy, model, train, list(val), epochs, progress=progress)
    return result.genotype, result.history
