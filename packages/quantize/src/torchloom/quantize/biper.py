"""BiPer: binary neural networks with a binary periodic function (Vargas et al., CVPR 2024).

Latent weights ``w`` are binarised with the square wave ``sign(sin(ω₀ w))``; the backward uses
the derivative of the sine with the same period, ``ω₀ cos(ω₀ w)``. Training runs in two stages:

* stage 1: the layer uses the real-valued ``sin(ω₀ w)`` as its weights (activations binary);
* stage 2: the layer uses ``sign(sin(ω₀ w))`` (``periodic_sign``), starting from the stage-1
  latent weights with the same ``ω₀``.

A regulariser ``τ · mean(sin²(ω₀ w))`` (the authors' ``0.5 − 0.5 cos(2ω₀w)``) is added to the
loss, with ``τ`` following an exponential schedule (:func:`tau_schedule`). Activations are
normalised per sample (only their gradient sees the normalisation: ``sign`` is scale-free),
binarised with ``sign`` and trained with the surrogate ``clamp(2 − |2x|, 0)``. Each layer has a
learnable per-output-channel scale ``α``.

:func:`quantization_error` gives the paper's quantisation error
``QE(ω₀) = E|sin(ω₀ w) − sign(sin(ω₀ w))|`` in closed form for Laplacian weights
``w ~ Laplace(0, b)``: with ``a = 1/(ω₀ b)``, ``QE = 1 − a·coth(πa/2)/(1 + a²)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchloom.core.autograd import heaviside, periodic_sign, sign_ste, triangle
from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "BiPerConv2d",
    "BiPerLinear",
    "SignSTEConv2d",
    "SignSTELinear",
    "binarize_model",
    "binary_activation",
    "biper_regularizer",
    "quantization_error",
    "set_biper_stage",
    "tau_schedule",
]

Stage = Literal[1, 2]
Method = Literal["biper", "ste", "clipped_ste"]
ErrorKind = Literal["l1", "l2"]


def binary_activation(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Binary activation ``sign(x)`` (``sign(0) = +1``) with the surrogate ``clamp(2 − |2x|, 0)``.

    With ``normalize`` each sample is first divided by its standard deviation over all non-batch
    dimensions (BiPer, after ReCU); the forward is unchanged by it, only the surrogate's width
    is. Shape ``(B, *)`` in and out.
    """
    check_floating(x, "x")
    if normalize:
        if x.dim() < 2:
            raise ValueError(f"x must have a batch dimension (B, *), got shape {tuple(x.shape)}")
        dims = tuple(range(1, x.dim()))
        x = x / torch.sqrt(x.var(dims, keepdim=True, unbiased=False) + 1e-5)
    # 2·H(x) − 1 with the unit triangle surrogate: gradient 2·max(0, 1 − |x|) = clamp(2 − |2x|, 0)
    return 2.0 * heaviside(x, triangle(1.0)) - 1.0


def _check_stage(stage: object) -> Stage:
    if stage not in (1, 2) or isinstance(stage, bool):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    return stage  # type: ignore[return-value]


class _BinaryMixin:
    """Shared state of the binary layers: activation binarisation and a per-channel scale."""

    weight: torch.Tensor
    alpha: nn.Parameter
    binarize_input: bool

    def _init_binary(self, out_channels: int, ndim: int, binarize_input: bool) -> None:
        shape = (out_channels,) + (1,) * ndim
        w = self.weight
        self.alpha = nn.Parameter(torch.ones(shape, device=w.device, dtype=w.dtype))
        self.binarize_input = binarize_input

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return binary_activation(x) if self.binarize_input else x


class BiPerLinear(nn.Linear, _BinaryMixin):
    """Linear layer with BiPer weights ``α ⊙ (x_b Wᵇᵀ) + bias``.

    ``Wᵇ = sin(ω₀W)`` in stage 1 and ``sign(sin(ω₀W))`` (gradient ``ω₀cos(ω₀W)``) in stage 2.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        freq: the frequency ``ω₀ > 0`` of the square wave.
        stage: 1 (real-valued sine weights) or 2 (binary weights).
        binarize_input: binarise the input with :func:`binary_activation`.

    Shapes: input ``(B, in_features)``, output ``(B, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        freq: float = 20.0,
        stage: Stage = 1,
        binarize_input: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.freq = check_positive(freq, "freq")
        self.stage: Stage = _check_stage(stage)
        self._init_binary(out_features, 0, binarize_input)

    def binary_weight(self) -> torch.Tensor:
        """The weights the layer multiplies by: ``sin(ω₀W)`` or ``sign(sin(ω₀W))``."""
        return _biper_weight(self.weight, self.freq, self.stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._input(x), self.binary_weight()) * self.alpha + (
            0.0 if self.bias is None else self.bias
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, freq={self.freq:g}, stage={self.stage}"


class BiPerConv2d(nn.Conv2d, _BinaryMixin):
    """2-D convolution with BiPer weights: ``α_c · conv(x_b, Wᵇ) + bias``.

    Weights as :class:`BiPerLinear`; all :class:`torch.nn.Conv2d` arguments are accepted.

    Shapes: input ``(B, C_in, H, W)``, output ``(B, C_out, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        freq: float = 20.0,
        stage: Stage = 1,
        binarize_input: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.freq = check_positive(freq, "freq")
        self.stage: Stage = _check_stage(stage)
        self._init_binary(out_channels, 2, binarize_input)

    def binary_weight(self) -> torch.Tensor:
        """The weights the layer convolves with: ``sin(ω₀W)`` or ``sign(sin(ω₀W))``."""
        return _biper_weight(self.weight, self.freq, self.stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv_forward(self._input(x), self.binary_weight(), None) * self.alpha
        return out if self.bias is None else out + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, freq={self.freq:g}, stage={self.stage}"


def _biper_weight(w: torch.Tensor, freq: float, stage: Stage) -> torch.Tensor:
    if stage == 1:
        return torch.sin(freq * w)
    return periodic_sign(w, freq)


class SignSTELinear(nn.Linear, _BinaryMixin):
    """The sign+STE baseline: ``α ⊙ (x_b sign(W)ᵀ) + bias`` with the straight-through gradient.

    ``clip=None`` passes the gradient everywhere (identity STE); a number ``c`` zeroes it where
    ``|W| > c`` (clipped STE, Hubara et al.). Activations as :class:`BiPerLinear`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        clip: float | None = None,
        binarize_input: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.clip = None if clip is None else check_positive(clip, "clip")
        self._init_binary(out_features, 0, binarize_input)

    def binary_weight(self) -> torch.Tensor:
        return _ste_weight(self.weight, self.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._input(x), self.binary_weight()) * self.alpha + (
            0.0 if self.bias is None else self.bias
        )


class SignSTEConv2d(nn.Conv2d, _BinaryMixin):
    """The sign+STE baseline for convolutions (see :class:`SignSTELinear`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        clip: float | None = None,
        binarize_input: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.clip = None if clip is None else check_positive(clip, "clip")
        self._init_binary(out_channels, 2, binarize_input)

    def binary_weight(self) -> torch.Tensor:
        return _ste_weight(self.weight, self.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv_forward(self._input(x), self.binary_weight(), None) * self.alpha
        return out if self.bias is None else out + self.bias[:, None, None]


def _ste_weight(w: torch.Tensor, clip: float | None) -> torch.Tensor:
    return _sign_id(w) if clip is None else sign_ste(w, clip)


def _sign_id(w: torch.Tensor) -> torch.Tensor:
    # identity straight-through: forward sign(w) (sign(0) = +1), backward dL/dw = dL/db
    b = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    return b + (w - w.detach())


_Binary = (BiPerLinear, BiPerConv2d, SignSTELinear, SignSTEConv2d)


def binarize_model(
    model: nn.Module,
    *,
    method: Method = "biper",
    freq: float = 20.0,
    stage: Stage = 1,
    clip: float = 1.0,
    binarize_input: bool = True,
    exclude: Iterable[str] = (),
) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear``/``nn.Conv2d`` replaced by a binary layer.

    Args:
        model: the network; it is not modified.
        method: ``"biper"`` (:class:`BiPerLinear`/:class:`BiPerConv2d`), ``"ste"`` (sign with the
            identity straight-through gradient) or ``"clipped_ste"`` (gradient zeroed where
            ``|w| > clip``).
        freq, stage: BiPer's ``ω₀`` and training stage.
        clip: the clipped STE's threshold.
        binarize_input: binarise each replaced layer's input.
        exclude: qualified module names (as in ``named_modules``) to keep full precision —
            usually the first and last layers.

    The latent weights, biases and the layer hyper-parameters are copied over.
    """
    if method not in ("biper", "ste", "clipped_ste"):
        raise ValueError(f"method must be 'biper', 'ste' or 'clipped_ste', got {method!r}")
    check_positive(freq, "freq")
    check_positive(clip, "clip")
    _check_stage(stage)
    skip = set(exclude)
    names = {n for n, _ in model.named_modules()}
    unknown = skip - names
    if unknown:
        raise ValueError(f"exclude names modules that do not exist: {sorted(unknown)}")
    out = copy.deepcopy(model)
    for name, mod in list(out.named_modules()):
        if name in skip or isinstance(mod, _Binary):
            continue
        if type(mod) is nn.Linear:
            new: nn.Module = _make_linear(mod, method, freq, stage, clip, binarize_input)
        elif type(mod) is nn.Conv2d:
            new = _make_conv(mod, method, freq, stage, clip, binarize_input)
        else:
            continue
        new.load_state_dict(mod.state_dict(), strict=False)
        _set_submodule(out, name, new)
    return out


def _make_linear(
    m: nn.Linear, method: Method, freq: float, stage: Stage, clip: float, bin_in: bool
) -> nn.Module:
    kw = {"device": m.weight.device, "dtype": m.weight.dtype, "binarize_input": bin_in}
    args = (m.in_features, m.out_features, m.bias is not None)
    if method == "biper":
        return BiPerLinear(*args, freq=freq, stage=stage, **kw)  # type: ignore[arg-type]
    c = clip if method == "clipped_ste" else None
    return SignSTELinear(*args, clip=c, **kw)  # type: ignore[arg-type]


def _make_conv(
    m: nn.Conv2d, method: Method, freq: float, stage: Stage, clip: float, bin_in: bool
) -> nn.Module:
    if m.padding_mode != "zeros":
        raise ValueError(
            f"only padding_mode='zeros' convolutions are supported, got {m.padding_mode!r}"
        )
    kw = {"device": m.weight.device, "dtype": m.weight.dtype, "binarize_input": bin_in}
    args = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
    bias = m.bias is not None
    if method == "biper":
        return BiPerConv2d(*args, bias, freq=freq, stage=stage, **kw)  # type: ignore[arg-type]
    c = clip if method == "clipped_ste" else None
    return SignSTEConv2d(*args, bias, clip=c, **kw)  # type: ignore[arg-type]


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def set_biper_stage(model: nn.Module, stage: Stage) -> nn.Module:
    """Switch every BiPer layer of ``model`` to ``stage`` in place, keeping latent weights and
    ``ω₀`` (the paper's stage-1 → stage-2 hand-over). Returns ``model``."""
    _check_stage(stage)
    found = False
    for m in model.modules():
        if isinstance(m, (BiPerLinear, BiPerConv2d)):
            m.stage = stage
            found = True
    if not found:
        raise ValueError("model contains no BiPer layer")
    return model


def biper_regularizer(model: nn.Module, tau: float | torch.Tensor) -> torch.Tensor:
    """``τ · Σ_layers mean(sin²(ω₀ W))`` over the BiPer layers of ``model`` (a scalar tensor)."""
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a scalar, got shape {tuple(tau.shape)}")
    else:
        check_positive(tau, "tau", strict=False)
    terms = [
        torch.sin(m.freq * m.weight).square().mean()
        for m in model.modules()
        if isinstance(m, (BiPerLinear, BiPerConv2d))
    ]
    if not terms:
        raise ValueError("model contains no BiPer layer")
    return tau * torch.stack(terms).sum()


def tau_schedule(epoch: int, epochs: int, tau_min: float, tau_max: float) -> float:
    """The authors' exponential schedule ``τ(e) = A·e^{e/E} + B`` from ``tau_min`` at ``e = 0``
    to ``tau_max`` at ``e = E``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= epoch <= epochs:
        raise ValueError(f"epoch must lie in [0, epochs={epochs}], got {epoch}")
    a = (tau_max - tau_min) / (math.e - 1.0)
    return a * math.exp(epoch / epochs) + tau_min - a


def quantization_error(
    freq: float | torch.Tensor, scale: float = 1.0, kind: ErrorKind = "l1"
) -> torch.Tensor:
    """Expected quantisation error of BiPer for Laplacian latent weights ``w ~ Laplace(0, b)``.

    ``kind="l1"``: ``E|sin(ω₀w) − sign(sin(ω₀w))| = 1 − a·coth(πa/2)/(1 + a²)``;
    ``kind="l2"``: ``E(sin(ω₀w) − sign(sin(ω₀w)))² = 1 − 2a·coth(πa/2)/(1 + a²) + 2/(a² + 4)``,
    with ``a = 1/(ω₀ b)``. Both fall from 1 (``ω₀ → 0``) to ``1 − 2/π`` and ``3/2 − 4/π``
    (``ω₀ → ∞``). ``freq`` may be a tensor of frequencies (any shape); ``scale`` is ``b``.
    """
    check_positive(scale, "scale")
    if kind not in ("l1", "l2"):
        raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
    w = torch.as_tensor(freq)
    if not w.is_floating_point():
        w = w.to(torch.get_default_dtype())
    if bool((w <= 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("freq must be finite and > 0")
    a = 1.0 / (w * scale)
    # a·coth(πa/2) written with expm1 so that large a (small ω₀) does not overflow
    x = math.pi * a
    a_coth = a * (1.0 + 2.0 / torch.expm1(x).clamp_min(torch.finfo(a.dtype).tiny))
    m1 = a_coth / (1.0 + a * a)  # E|sin(ω₀w)|
    if kind == "l1":
        return 1.0 - m1
    return 1.0 - 2.0 * m1 + 2.0 / (a * a + 4.0)
