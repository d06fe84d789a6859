"""The search space: candidate operations, an op registry, pluggable mixing rules, DARTS cells.

Everything a differentiable NAS method needs below the network level lives here:

- **Candidate operations** (DARTS, Liu et al. 2019): ``none`` (:class:`Zero`), ``skip_connect``
  (identity, or :class:`FactorizedReduce` at stride 2), ``max_pool_3x3``, ``avg_pool_3x3``,
  ``sep_conv_3x3/5x5`` (:class:`SepConv`), ``dil_conv_3x3/5x5`` (:class:`DilConv`), ``conv_1x1``,
  and sharpDARTS's ``sharp_sep_conv_3x3/5x5`` (:class:`SharpSepConv`).
- **An op registry**: :func:`register_op`, :func:`make_op`, :func:`available_ops`. An unknown
  name raises a ``ValueError`` that lists the known ones.
- **Mixing rules**: how a :class:`MixedEdge` turns its architecture logits ``α`` into per-op
  coefficients. :class:`SoftmaxMixing` (DARTS), :class:`MaxWMixing` (sharpDARTS),
  :class:`GumbelMixing` (FBNet/GDAS), :class:`BinaryPathMixing` (ProxylessNAS).
- **Cells**: :class:`MixedEdge` and the DARTS :class:`SearchCell` (normal or reduction), with
  ``N`` intermediate nodes each summing mixed edges from the two cell inputs and every earlier
  node.

Adding an operation
-------------------
An op factory is any callable ``factory(C, stride, affine) -> nn.Module`` whose module maps
``(B, C, H, W)`` to ``(B, C, H / stride, W / stride)`` (``affine`` is False during search, as in
DARTS, so that BatchNorm does not learn scales that fight the architecture weights)::

    from torchloom.nas.space import register_op

    register_op("conv_3x3", lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine))
    net = Supernet(ops=("none", "skip_connect", "conv_3x3"))

Adding a mixing rule
--------------------
A mixing rule is any callable ``rule(logits) -> Mixture | Tensor`` (:class:`MixingRule`).
``logits`` is ``(E, N)``: one row of architecture parameters per edge of a cell type (all cells
of that type share them), ``N`` candidate ops. It returns a :class:`Mixture` with ``weights``
``(E, N)``: the edge output is ``Σ_i weights[e, i] · op_i(x)``, and optionally ``active``
``(E, k)`` int64: the only ops to evaluate on each edge (paths left out contribute nothing and
cost no memory, as in ProxylessNAS). A plain tensor return means ``Mixture(weights=tensor)``::

    class SigmoidMixing:                      # independent gates, no competition between ops
        def __call__(self, logits: torch.Tensor) -> Mixture:
            return Mixture(torch.sigmoid(logits))

    net = Supernet(mixing=SigmoidMixing())

A rule may hold state (a temperature to anneal, a generator); the supernet calls it once per
forward per cell type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive
from torchloom.core.relax import binary_gate, binary_gate_two_path, gumbel_softmax

__all__ = [
    "PRIMITIVES",
    "BinaryPathMixing",
    "DilConv",
    "FactorizedReduce",
    "GumbelMixing",
    "Identity",
    "MaxWMixing",
    "MixedEdge",
    "MixingRule",
    "Mixture",
    "OpFactory",
    "ReLUConvBN",
    "SearchCell",
    "SepConv",
    "SharpSepConv",
    "SoftmaxMixing",
    "Zero",
    "as_mixture",
    "available_ops",
    "cell_edges",
    "make_op",
    "max_w_coefficients",
    "mix_ops",
    "num_edges",
    "register_op",
]


# --------------------------------------------------------------------------- operations


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape (strided when ``stride > 1``).

    Shapes:
        x: ``(B, C, H, W)``; output: ``(B, C, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = check_int(stride, "stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zeros shaped like the op's output.

        Args:
            x: input ``(B, C, H, W)``.

        Returns:
            Zeros ``(B, C, ceil(H / stride), ceil(W / stride))``.
        """
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Module):
    """The ``skip_connect`` operation at stride 1.

    Shapes:
        x: ``(B, C, H, W)``; output: the same tensor.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x``.

        Args:
            x: input ``(B, C, H, W)``.

        Returns:
            ``x`` itself.
        """
        return x


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv2d(k, stride, padding) → BatchNorm.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: convolution kernel size.
        stride: convolution stride.
        padding: zero padding.
        affine: whether BatchNorm learns a scale and shift.

    Shapes:
        x: ``(B, C_in, H, W)``; output: ``(B, C_out, H', W')``.
    """

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """DARTS dilated separable convolution: ReLU → depthwise k×k (dilated) → 1×1 → BatchNorm.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride.
        padding: zero padding.
        dilation: depthwise dilation.
        affine: whether BatchNorm learns a scale and shift.

    Shapes:
        x: ``(B, C_in, H, W)``; output: ``(B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """DARTS separable convolution: two stacked (ReLU → depthwise k×k → 1×1 → BatchNorm) blocks,
    the first one strided.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: depthwise kernel size.
        stride: stride of the first depthwise convolution.
        padding: zero padding.
        affine: whether BatchNorm learns a scale and shift.

    Shapes:
        x: ``(B, C_in, H, W)``; output: ``(B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class SharpSepConv(nn.Sequential):
    """sharpDARTS's SharpSepConv (Hundt et al. 2019): ReLU → depthwise k×k (strided) → 1×1 to
    ``C · mult`` → BatchNorm → ReLU → depthwise k×k → 1×1 to ``C_out`` → BatchNorm.

    Unlike :class:`SepConv`, the two depthwise convolutions share one block with a single
    (optionally widened) middle width, so it has fewer BatchNorms and a tunable bottleneck.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: depthwise kernel size.
        stride: stride of the first depthwise convolution.
        padding: zero padding.
        dilation: dilation of both depthwise convolutions.
        affine: whether BatchNorm learns a scale and shift.
        mid_mult: middle width ``C_mid = round(C_in · mid_mult)``.

    Shapes:
        x: ``(B, C_in, H, W)``; output: ``(B, C_out, H / stride, W / stride)``.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        affine: bool = True,
        mid_mult: float = 1.0,
    ) -> None:
        mid_mult = check_positive(mid_mult, "mid_mult")
        C_mid = max(1, round(C_in * mid_mult))
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_mid, 1, bias=False),
            nn.BatchNorm2d(C_mid, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_mid,
                C_mid,
                kernel_size,
                stride=1,
                padding=padding,
                dilation=dilation,
                groups=C_mid,
                bias=False,
            ),
            nn.Conv2d(C_mid, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """DARTS stride-2 reduction: ReLU, two 1×1 stride-2 convolutions on offset grids,
    concatenated, then BatchNorm.

    Args:
        C_in: input channels.
        C_out: output channels (even).
        affine: whether BatchNorm learns a scale and shift.

    Shapes:
        x: ``(B, C_in, H, W)`` with even ``H, W``; output: ``(B, C_out, H / 2, W / 2)``.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2 != 0:
            raise ValueError(f"C_out must be even for FactorizedReduce, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reduce the spatial size by two.

        Args:
            x: input ``(B, C_in, H, W)``, ``H`` and ``W`` even.

        Returns:
            ``(B, C_out, H / 2, W / 2)``.
        """
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(
                f"x must have even spatial size for FactorizedReduce, got {tuple(x.shape)}"
            )
        x = self.relu(x)
        cat = torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)
        out: torch.Tensor = self.bn(cat)
        return out


# --------------------------------------------------------------------------- registry


OpFactory = Callable[[int, int, bool], nn.Module]
"""``factory(C, stride, affine) -> nn.Module`` mapping ``(B, C, H, W)`` to
``(B, C, H / stride, W / stride)``."""

_REGISTRY: dict[str, OpFactory] = {}


def register_op(name: str, factory: OpFactory, *, overwrite: bool = False) -> None:
    """Add a candidate operation to the registry.

    Args:
        name: the op's name, used in ``Supernet(ops=...)`` and in genotypes.
        factory: ``factory(C, stride, affine) -> nn.Module``; the module maps ``(B, C, H, W)``
            to ``(B, C, H / stride, W / stride)``.
        overwrite: allow replacing an op already registered under ``name``.

    Raises:
        ValueError: if ``name`` is empty or already registered (and ``overwrite`` is False).
        TypeError: if ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"op {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def available_ops() -> tuple[str, ...]:
    """Names of every registered operation, sorted.

    Returns:
        The registered op names.
    """
    return tuple(sorted(_REGISTRY))


def _check_op_name(name: object) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown op {name!r}; registered ops are {list(available_ops())} "
            "(add one with torchloom.nas.space.register_op)"
        )
    return name


def make_op(name: str, C: int, stride: int = 1, affine: bool = False) -> nn.Module:
    """Instantiate a registered operation.

    Args:
        name: a registered op name (see :func:`available_ops`).
        C: channels in and out.
        stride: 1 (normal edge) or 2 (reduction edge from a cell input).
        affine: whether BatchNorms learn scale and shift (False during search, as in DARTS).

    Returns:
        The module, ``(B, C, H, W) -> (B, C, H / stride, W / stride)``.

    Raises:
        ValueError: on an unknown ``name``, or ``C``/``stride`` below 1.
    """
    _check_op_name(name)
    check_int(C, "C")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    return _REGISTRY[name](C, stride, bool(affine))


def _pool(kind: str) -> OpFactory:
    def factory(C: int, stride: int, affine: bool) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return factory


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


register_op("none", lambda C, stride, affine: Zero(stride))
register_op("skip_connect", _skip)
register_op("max_pool_3x3", _pool("max"))
register_op("avg_pool_3x3", _pool("avg"))
register_op("sep_conv_3x3", lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine))
register_op("sep_conv_5x5", lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine))
register_op("sep_conv_7x7", lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine))
register_op("dil_conv_3x3", lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine))
register_op("dil_conv_5x5", lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine))
register_op("conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine))
register_op("conv_3x3", lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine))
register_op(
    "sharp_sep_conv_3x3",
    lambda C, stride, affine: SharpSepConv(C, C, 3, stride, 1, 1, affine),
)
register_op(
    "sharp_sep_conv_5x5",
    lambda C, stride, affine: SharpSepConv(C, C, 5, stride, 2, 1, affine),
)

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The DARTS search space (Liu et al. 2019, Sec. 3.1)."""


# --------------------------------------------------------------------------- mixing rules


@dataclass(frozen=True)
class Mixture:
    """What a mixing rule returns for one cell type.

    Attributes:
        weights: ``(E, N)`` coefficients; edge ``e`` outputs ``Σ_i weights[e, i] · op_i(x)``.
        active: ``(E, k)`` int64 indices of the only ops evaluated on each edge, or ``None``
            (evaluate every op whose weight is needed).
    """

    weights: torch.Tensor
    active: torch.Tensor | None = None


@runtime_checkable
class MixingRule(Protocol):
    """A callable turning architecture logits ``(E, N)`` into a :class:`Mixture` (or a plain
    ``(E, N)`` weight tensor)."""

    def __call__(self, logits: torch.Tensor) -> Mixture | torch.Tensor: ...


def as_mixture(out: Mixture | torch.Tensor, shape: Sequence[int]) -> Mixture:
    """Normalise a mixing rule's output to a :class:`Mixture` and check its shapes.

    Args:
        out: the rule's output.
        shape: the expected weight shape ``(E, N)``.

    Returns:
        A :class:`Mixture` with ``weights`` of ``shape``.
    """
    mix = out if isinstance(out, Mixture) else Mixture(out)
    check_floating(mix.weights, "mixture weights")
    if tuple(mix.weights.shape) != tuple(shape):
        raise ValueError(
            f"mixture weights must have shape {tuple(shape)}, got {tuple(mix.weights.shape)}"
        )
    if mix.active is not None:
        a = mix.active
        if a.dtype != torch.int64 or a.dim() != 2 or a.shape[0] != shape[0]:
            raise ValueError(
                f"mixture active must be int64 of shape ({shape[0]}, k), "
                f"got {a.dtype} {tuple(a.shape)}"
            )
    return mix


class SoftmaxMixing:
    """DARTS: ``w = softmax(α / T)`` over the ops of each edge.

    Args:
        temperature: softmax temperature ``T > 0``.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = check_positive(temperature, "temperature")

    def __call__(self, logits: torch.Tensor) -> Mixture:
        """Softmax weights.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            ``Mixture(softmax(logits / T, -1))``.
        """
        return Mixture((logits / self.temperature).softmax(-1))


def max_w_coefficients(logits: torch.Tensor) -> torch.Tensor:
    """sharpDARTS Max-W coefficients ``1 − max_j w_j + w_i`` with ``w = softmax(α)``.

    The strongest op gets coefficient exactly 1 and every other op is scaled down by its gap to
    it, which regularises the search towards a clear winner (Hundt et al. 2019, Sec. 3.3).

    Args:
        logits: ``(..., N)`` architecture parameters.

    Returns:
        ``(..., N)`` coefficients in ``(0, 1]``.
    """
    check_floating(logits, "logits")
    w = logits.softmax(-1)
    return 1.0 - w.max(-1, keepdim=True).values + w


class MaxWMixing:
    """sharpDARTS Max-W mixing: edge output ``Σ_i (1 − max w + w_i) · op_i(x)``,
    ``w = softmax(α)``."""

    def __call__(self, logits: torch.Tensor) -> Mixture:
        """Max-W weights.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            ``Mixture(max_w_coefficients(logits))``.
        """
        return Mixture(max_w_coefficients(logits))


class GumbelMixing:
    """Gumbel-softmax samples of the op choice (FBNet, GDAS): ``w = softmax((α + G) / τ)``.

    Args:
        tau: temperature ``τ > 0``; assign ``rule.tau`` to anneal it.
        hard: one-hot forward with the soft gradient (straight-through).
        generator: the source of randomness (global RNG when ``None``).
    """

    def __init__(
        self, tau: float = 1.0, hard: bool = False, generator: torch.Generator | None = None
    ) -> None:
        self.tau = check_positive(tau, "tau")
        self.hard = bool(hard)
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> Mixture:
        """One Gumbel-softmax sample per edge.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            ``Mixture(weights)``, ``weights`` ``(E, N)``, rows on the simplex.
        """
        return Mixture(gumbel_softmax(logits, self.tau, self.hard, -1, self.generator))


class BinaryPathMixing:
    """ProxylessNAS binarised paths: one active op per edge, sampled from ``softmax(α)``.

    One-path mode evaluates every op (``active=None``) so that the estimator
    ``∂L/∂α_i = Σ_j ∂L/∂g_j p_j (δ_ij − p_i)`` sees ``∂L/∂g_j`` for all ``j``; two-path mode
    samples two candidates, evaluates only them (``active`` ``(E, 2)``) and uses the estimator
    restricted to the pair (:func:`torchloom.core.relax.binary_gate_two_path`).

    Args:
        two_path: the memory-saving two-candidate mode.
        generator: the source of randomness (global RNG when ``None``).
    """

    def __init__(self, two_path: bool = False, generator: torch.Generator | None = None) -> None:
        self.two_path = bool(two_path)
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> Mixture:
        """Sample binary gates.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            ``Mixture(gates, active)``: one-hot ``gates`` ``(E, N)``; ``active`` is the sampled
            pair ``(E, 2)`` in two-path mode, else ``None``.
        """
        if self.two_path:
            gates, pair = binary_gate_two_path(logits, self.generator)
            return Mixture(gates, pair)
        return Mixture(binary_gate(logits, self.generator))


# --------------------------------------------------------------------------- edges and cells


class _Snapshot:
    """Restore an op's buffers (BatchNorm running statistics) after a side recomputation."""

    def __init__(self, ops: Iterable[nn.Module]) -> None:
        self.saved = [(b, b.clone()) for op in ops for b in op.buffers()]

    def restore(self) -> None:
        for b, v in self.saved:
            b.copy_(v)


class _LazyPaths(torch.autograd.Function):
    """Zero in the forward; in the backward, ``∂L/∂w_j = <∂L/∂out, op_j(x)>`` for lazy ``j``."""

    @staticmethod
    def forward(
        weights: torch.Tensor,
        x: torch.Tensor,
        ops: list[nn.Module],
        index: list[int],
        like: torch.Tensor,
    ) -> torch.Tensor:
        return torch.zeros(like.shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        weights, x, ops, index, _ = inputs
        ctx.ops = ops
        ctx.index = index
        ctx.weights_shape = weights.shape
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.zeros(ctx.weights_shape, dtype=grad_out.dtype, device=grad_out.device)
            with torch.no_grad():
                snap = _Snapshot(ctx.ops)
                for j, op in zip(ctx.index, ctx.ops):
                    grad_w[j] = (grad_out * op(x)).sum()
                snap.restore()
        return grad_w, None, None, None, None


def mix_ops(
    ops: Sequence[nn.Module],
    x: torch.Tensor,
    weights: torch.Tensor,
    active: torch.Tensor | None = None,
    lazy: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ_i weights[i] · ops[i](x)`` over ``active`` ops, with memory-free gradients for ``lazy``.

    The ``active`` ops are evaluated with a graph. For each ``lazy`` op ``j`` the term
    ``weights[j] · ops[j](x)`` is taken to have zero value (its weight is a zero gate) and its
    gradient ``∂L/∂weights[j] = <∂L/∂out, ops[j](x)>`` is computed in the backward pass by
    re-running ``ops[j]`` under ``torch.no_grad`` (its buffers, e.g. BatchNorm running stats,
    are restored). Only ``x`` is saved for that, so memory does not grow with ``len(lazy)``.
    The gradient to ``x`` and to the lazy ops' parameters through a lazy term is exactly zero
    (its weight is zero), so nothing is lost.

    Args:
        ops: the ``N`` candidate modules.
        x: the edge input ``(B, *)``.
        weights: ``(N,)`` coefficients (gates).
        active: ``(k,)`` int64 indices evaluated with a graph; ``None`` evaluates all ``N``.
        lazy: ``(m,)`` int64 indices whose weight gradient is computed in the backward only.

    Returns:
        The mixed output, shaped like ``ops[i](x)``.
    """
    check_floating(weights, "weights")
    if weights.shape != (len(ops),):
        raise ValueError(f"weights must have shape ({len(ops)},), got {tuple(weights.shape)}")
    idx = range(len(ops)) if active is None else [int(i) for i in active.tolist()]
    out: torch.Tensor | None = None
    for i in idx:
        term = weights[i] * ops[i](x)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("active must select at least one op")
    if lazy is not None and lazy.numel() > 0:
        index = [int(j) for j in lazy.tolist()]
        if weights.requires_grad and torch.is_grad_enabled():
            out = out + _LazyPaths.apply(weights, x, [ops[j] for j in index], index, out)
    return out


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence):
        raise TypeError(f"ops must be a sequence of op names, got {type(ops).__name__}")
    names = tuple(_check_op_name(o) for o in ops)
    if not names:
        raise ValueError("ops must name at least one operation, got none")
    if len(set(names)) != len(names):
        raise ValueError(f"ops must not repeat a name, got {list(names)}")
    return names


class MixedEdge(nn.Module):
    """One edge of the supernet: every candidate op, combined with given weights.

    Args:
        C: channels.
        stride: 1, or 2 for edges leaving a reduction cell's inputs.
        ops: candidate op names (registered).
        affine: BatchNorm affine flag passed to each op.
        pool_bn: append a non-affine BatchNorm to pooling ops, as DARTS does during search.

    Shapes:
        x: ``(B, C, H, W)``; weights: ``(N,)``; output: ``(B, C, H / stride, W / stride)``.
    """

    def __init__(
        self,
        C: int,
        stride: int,
        ops: Sequence[str] = PRIMITIVES,
        affine: bool = False,
        pool_bn: bool = True,
    ) -> None:
        super().__init__()
        self.op_names = _check_ops(ops)
        self.ops = nn.ModuleList(
            _edge_op(name, C, stride, affine, pool_bn) for name in self.op_names
        )

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        active: torch.Tensor | None = None,
        lazy: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_i weights[i] · op_i(x)`` over all ops, or over ``active`` ones only.

        ``lazy`` ops (ProxylessNAS binary paths, :attr:`torchloom.nas.proxyless.PathSample.lazy`)
        take no part in the value but get ``∂L/∂weights[j]`` by recomputation in the backward
        pass, without storing their activations (:func:`mix_ops`).

        Args:
            x: input ``(B, C, H, W)``.
            weights: ``(N,)`` coefficients.
            active: ``(k,)`` int64 indices of the ops to evaluate, or ``None`` for all.
            lazy: ``(m,)`` int64 indices whose weight gradient is computed in the backward only.

        Returns:
            ``(B, C, H / stride, W / stride)``.
        """
        return mix_ops(list(self.ops), x, weights, active, lazy)


def _edge_op(name: str, C: int, stride: int, affine: bool, pool_bn: bool) -> nn.Module:
    op = make_op(name, C, stride, affine)
    if pool_bn and "pool" in name:
        return nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
    return op


def num_edges(steps: int) -> int:
    """Number of edges in a DARTS cell with ``steps`` intermediate nodes: ``Σ_i (2 + i)``.

    Args:
        steps: intermediate nodes.

    Returns:
        ``steps · (steps + 3) / 2``.
    """
    check_int(steps, "steps")
    return steps * (steps + 3) // 2


def cell_edges(steps: int) -> list[tuple[int, int]]:
    """The edges of a DARTS cell in supernet order: ``(node, input)`` with ``node`` in
    ``0..steps-1`` (state ``node + 2``) and ``input`` in ``0..node+1`` (states 0 and 1 are the
    cell inputs).

    Args:
        steps: intermediate nodes.

    Returns:
        ``num_edges(steps)`` pairs.
    """
    check_int(steps, "steps")
    return [(i, j) for i in range(steps) for j in range(2 + i)]


class SearchCell(nn.Module):
    """A DARTS search cell: two preprocessed inputs, ``steps`` nodes, mixed edges everywhere.

    Node ``i`` (state ``i + 2``) is ``Σ_{j < i + 2} edge_{i,j}(state_j)``; the cell outputs the
    channel concatenation of the last ``multiplier`` nodes. In a reduction cell the edges from the
    two inputs have stride 2.

    Args:
        steps: intermediate nodes ``N`` (≥ 1).
        multiplier: how many of the last nodes are concatenated (1..steps).
        C_prev_prev: channels of the input two cells back.
        C_prev: channels of the previous cell's output.
        C: channels of every node.
        reduction: whether this is a reduction cell.
        reduction_prev: whether the previous cell was a reduction (halves ``s0`` here).
        ops: candidate op names.
        pool_bn: non-affine BatchNorm after pooling ops (DARTS search).

    Shapes:
        s0: ``(B, C_prev_prev, H0, W0)``; s1: ``(B, C_prev, H, W)``; weights: ``(E, N)``;
        output: ``(B, multiplier · C, H / r, W / r)`` with ``r = 2`` in a reduction cell.
    """

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        ops: Sequence[str] = PRIMITIVES,
        pool_bn: bool = True,
    ) -> None:
        super().__init__()
        self.steps = check_int(steps, "steps")
        self.multiplier = check_int(multiplier, "multiplier")
        if self.multiplier > self.steps:
            raise ValueError(f"multiplier must be <= steps={steps}, got {multiplier}")
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(C_prev_prev, C, affine=False)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.num_ops = len(_check_ops(ops))
        self.edges = nn.ModuleList(
            MixedEdge(C, 2 if reduction and j < 2 else 1, ops, affine=False, pool_bn=pool_bn)
            for _, j in cell_edges(steps)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, mixture: Mixture | torch.Tensor
    ) -> torch.Tensor:
        """Run the cell with per-edge weights.

        Args:
            s0: output of the cell two back ``(B, C_prev_prev, H0, W0)``.
            s1: output of the previous cell ``(B, C_prev, H, W)``.
            mixture: a :class:`Mixture` (or weights) with ``weights`` ``(E, N)``.

        Returns:
            ``(B, multiplier · C, H / r, W / r)``.
        """
        mix = as_mixture(mixture, (len(self.edges), self.num_ops))
        lazy: torch.Tensor | None = getattr(mix, "lazy", None)  # ProxylessNAS PathSample
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node: torch.Tensor | None = None
            for j, h in enumerate(states):
                e = offset + j
                act = None if mix.active is None else mix.active[e]
                lz = None if lazy is None else lazy[e]
                term = self.edges[e](h, mix.weights[e], act, lz)
                node = term if node is None else node + term
            offset += len(states)
            if node is None:  # pragma: no cover - every node has >= 2 inputs
                raise RuntimeError("empty node")
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)
