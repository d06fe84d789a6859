"""Step functions with surrogate or straight-through backward passes.

``heaviside(x, surrogate)`` is the spike function of spiking networks: the forward is the exact
step ``H(x) = 1[x >= 0]`` and the backward replaces the Dirac delta by the derivative ``g(x)`` of a
smooth primitive (rectangular, triangle, sigmoid, atan or SuperSpike's fast sigmoid).
``sign_ste`` is the binary-network sign with the clipped straight-through estimator, and
``periodic_sign`` is the BiPer estimator: forward ``sign(sin(ω x))``, backward ``ω cos(ω x)``.

All are ``torch.autograd.Function``s with ``setup_context`` so ``torch.compile`` traces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "Surrogate",
    "atan",
    "fast_sigmoid",
    "heaviside",
    "periodic_sign",
    "rectangular",
    "sigmoid",
    "sign_ste",
    "triangle",
]

SurrogateKind = Literal["rectangular", "triangle", "sigmoid", "atan", "fast_sigmoid"]
_KINDS = ("rectangular", "triangle", "sigmoid", "atan", "fast_sigmoid")


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative ``g(x)`` for the Heaviside step, with its smooth primitive.

    Build one with :func:`rectangular`, :func:`triangle`, :func:`sigmoid`, :func:`atan` or
    :func:`fast_sigmoid`. ``grad(x)`` is used in the backward pass; ``primitive(x)`` is the
    smooth function whose derivative it is (useful to check the backward numerically).
    """

    kind: SurrogateKind
    param: float

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"surrogate kind must be one of {_KINDS}, got {self.kind!r}")
        check_positive(self.param, f"{self.kind} parameter")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Surrogate derivative ``g(x)``, same shape as ``x``."""
        return _surrogate_grad(x, self.kind, self.param)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """Smooth function whose derivative is :meth:`grad` (a relaxed step)."""
        a = self.param
        if self.kind == "rectangular":
            return torch.clamp(x / a + 0.5, 0.0, 1.0)
        if self.kind == "triangle":
            # integral of max(0, a - |x|) / a^2, centred so that primitive(0) = 1/2
            y = torch.clamp(x, -a, a)
            return 0.5 + (y * a - y * y.abs() / 2) / (a * a)
        if self.kind == "sigmoid":
            return torch.sigmoid(a * x)
        if self.kind == "atan":
            return torch.atan(math.pi / 2 * a * x) / math.pi + 0.5
        # fast_sigmoid: integral of 1 / (k|x| + 1)^2 is x / (k|x| + 1)
        return x / (a * x.abs() + 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return heaviside(x, self)


def _surrogate_grad(x: torch.Tensor, kind: str, a: float) -> torch.Tensor:
    if kind == "rectangular":
        return (x.abs() < a / 2).to(x.dtype) / a
    if kind == "triangle":
        return torch.clamp(a - x.abs(), min=0.0) / (a * a)
    if kind == "sigmoid":
        s = torch.sigmoid(a * x)
        return a * s * (1 - s)
    if kind == "atan":
        return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)
    return 1.0 / (a * x.abs() + 1) ** 2


def rectangular(width: float = 1.0) -> Surrogate:
    """Box surrogate ``g(x) = 1[|x| < width/2] / width`` (SLTT's choice, width 1)."""
    return Surrogate("rectangular", width)


def triangle(width: float = 1.0) -> Surrogate:
    """Triangle surrogate ``g(x) = max(0, width - |x|) / width²`` (unit area)."""
    return Surrogate("triangle", width)


def sigmoid(alpha: float = 4.0) -> Surrogate:
    """Sigmoid surrogate ``g(x) = α σ(αx)(1 − σ(αx))``."""
    return Surrogate("sigmoid", alpha)


def atan(alpha: float = 2.0) -> Surrogate:
    """Arctangent surrogate ``g(x) = (α/2) / (1 + (π α x / 2)²)`` (SpikingJelly's ATan)."""
    return Surrogate("atan", alpha)


def fast_sigmoid(slope: float = 25.0) -> Surrogate:
    """SuperSpike surrogate ``g(x) = 1 / (slope·|x| + 1)²`` (snnTorch's ``fast_sigmoid``)."""
    return Surrogate("fast_sigmoid", slope)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, kind: str, param: float) -> torch.Tensor:
        return (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, kind, param = inputs
        ctx.save_for_backward(x)
        ctx.kind = kind
        ctx.param = param

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        return grad_out * _surrogate_grad(x, ctx.kind, ctx.param), None, None


def heaviside(x: torch.Tensor, surrogate: Surrogate | None = None) -> torch.Tensor:
    """Spike function ``H(x) = 1[x >= 0]`` with a surrogate backward.

    Args:
        x: membrane potential minus threshold, any shape ``(*)``, floating point.
        surrogate: backward rule; default ``rectangular(1.0)``.

    Returns:
        Spikes of the same shape and dtype, values exactly 0 or 1.
    """
    check_floating(x, "x")
    s = rectangular() if surrogate is None else surrogate
    if not isinstance(s, Surrogate):
        raise TypeError(f"surrogate must be a Surrogate, got {type(s).__name__}")
    out: torch.Tensor = _Heaviside.apply(x, s.kind, s.param)
    return out


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, clip: float) -> torch.Tensor:
        # sign(0) = +1 so the output is always binary
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, clip = inputs
        ctx.save_for_backward(x)
        ctx.clip = clip

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * (x.abs() <= ctx.clip).to(grad_out.dtype), None


def sign_ste(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """Binary sign (``±1``, ``sign(0) = +1``) with the clipped straight-through estimator.

    The backward passes the gradient where ``|x| <= clip`` and zeroes it elsewhere
    (Hubara et al.). Shape ``(*)`` in, ``(*)`` out.
    """
    check_floating(x, "x")
    check_positive(clip, "clip")
    out: torch.Tensor = _SignSTE.apply(x, float(clip))
    return out


class _PeriodicSign(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, freq: float) -> torch.Tensor:
        return torch.where(torch.sin(freq * x) >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, freq = inputs
        ctx.save_for_backward(x)
        ctx.freq = freq

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * ctx.freq * torch.cos(ctx.freq * x), None


def periodic_sign(x: torch.Tensor, freq: float) -> torch.Tensor:
    """BiPer's binarisation: forward the square wave ``sign(sin(freq·x))``, backward the
    derivative of ``sin(freq·x)``, i.e. ``freq·cos(freq·x)``. Shape ``(*)`` in and out."""
    check_floating(x, "x")
    check_positive(freq, "freq")
    out: torch.Tensor = _PeriodicSign.apply(x, float(freq))
    return out
