"""Activations and Gaussian expectations shared by the kernel modules.

Every infinite-width recursion needs ``E[f(u) g(v)]`` for ``(u, v)`` a centred bivariate
Gaussian with covariance ``[[k11, k12], [k12, k22]]``. ReLU (arc-cosine kernel, Cho & Saul
2009), erf (Williams 1997) and the identity have closed forms; anything else is integrated by a
tensor-product Gauss–Hermite rule over ``u = sqrt(k11) z1``,
``v = sqrt(k22) (rho z1 + sqrt(1 - rho^2) z2)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from torchloom.core.warnings import TorchloomWarning

Method = Literal["auto", "closed", "quadrature"]
ActivationLike = str | Callable[[torch.Tensor], torch.Tensor]

_FUNCS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "erf": torch.erf,
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "sin": torch.sin,
    "swish": F.silu,
    "elu": F.elu,
}
_ALIASES = {"linear": "identity", "silu": "swish"}
_CLOSED = frozenset({"relu", "erf", "identity"})


@dataclass(frozen=True)
class Activation:
    """A pointwise nonlinearity with its name (``None`` for a user callable)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    name: str | None

    @property
    def has_closed_form(self) -> bool:
        return self.name in _CLOSED

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """Pointwise derivative (autograd; ReLU's derivative at 0 is taken as 0)."""
        if self.name == "relu":
            return (x > 0).to(x.dtype)
        if self.name == "identity":
            return torch.ones_like(x)
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn(z).sum(), z)
        return g


def get_activation(activation: ActivationLike) -> Activation:
    """Resolve a name (``relu``, ``erf``, ``tanh``, ``gelu``, …) or a pointwise callable."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = _ALIASES.get(activation.lower(), activation.lower())
        if key not in _FUNCS:
            raise ValueError(
                f"activation must be one of {sorted(_FUNCS)} or a callable, got {activation!r}"
            )
        return Activation(_FUNCS[key], key)
    if callable(activation):
        return Activation(activation, None)
    raise TypeError(f"activation must be a string or a callable, got {type(activation).__name__}")


def resolve_method(act: Activation, method: Method) -> Literal["closed", "quadrature"]:
    """``closed`` where a closed form exists; a request for one that does not warns and falls
    back to quadrature."""
    if method not in ("auto", "closed", "quadrature"):
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature', got {method!r}")
    if method == "quadrature":
        return "quadrature"
    if act.has_closed_form:
        return "closed"
    if method == "closed":
        warnings.warn(
            f"activation {act.name or act.fn!r} has no closed-form kernel "
            f"(closed forms: {sorted(_CLOSED)}); falling back to Gauss-Hermite quadrature",
            TorchloomWarning,
            stacklevel=3,
        )
    return "quadrature"


def hermite_rule(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilists' Gauss–Hermite nodes and weights normalised to sum to one:
    ``E_{z~N(0,1)} g(z) ~= sum_i w_i g(z_i)``. An even ``n`` avoids a node at 0, which makes
    the rule exact for ReLU moments of even order."""
    if n < 2:
        raise ValueError(f"nodes must be >= 2, got {n}")
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    return (
        torch.as_tensor(z, dtype=like.dtype, device=like.device),
        torch.as_tensor(w, dtype=like.dtype, device=like.device),
    )


def gaussian_expectation(
    g: Callable[[torch.Tensor], torch.Tensor], var: torch.Tensor, nodes: int = 100
) -> torch.Tensor:
    """``E_{z ~ N(0, var)} g(z)`` elementwise over ``var`` by Gauss–Hermite quadrature."""
    z, w = hermite_rule(nodes, var)
    x = var.clamp_min(0).sqrt().unsqueeze(-1) * z
    return (g(x) * w).sum(-1)


def _correlation(k11: torch.Tensor, k22: torch.Tensor, k12: torch.Tensor) -> torch.Tensor:
    norm = (k11 * k22).clamp_min(torch.finfo(k12.dtype).tiny).sqrt()
    return (k12 / norm).clamp(-1.0, 1.0)


def _closed_pair(
    name: str, k11: torch.Tensor, k22: torch.Tensor, k12: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed forms of ``E[phi(u) phi(v)]`` and ``E[phi'(u) phi'(v)]``."""
    if name == "identity":
        return k12, torch.ones_like(k12)
    if name == "relu":
        # Arc-cosine kernel of degree 1 and degree 0 (Cho & Saul 2009).
        rho = _correlation(k11, k22, k12)
        theta = torch.arccos(rho)
        norm = (k11 * k22).clamp_min(0).sqrt()
        sin = (1 - rho * rho).clamp_min(0).sqrt()
        ephi = norm * (sin + (math.pi - theta) * rho) / (2 * math.pi)
        edphi = (math.pi - theta) / (2 * math.pi)
        return ephi, edphi
    if name == "erf":
        # Williams (1997): E[erf(u) erf(v)] = 2/pi arcsin(2 k12 / sqrt((1+2k11)(1+2k22))).
        a = 1 + 2 * k11
        b = 1 + 2 * k22
        ephi = (2 / math.pi) * torch.arcsin((2 * k12 / (a * b).sqrt()).clamp(-1.0, 1.0))
        edphi = (4 / math.pi) / (a * b - 4 * k12 * k12).clamp_min(0).sqrt()
        return ephi, edphi
    raise ValueError(f"no closed form for activation {name!r}")


def _quadrature_pair(
    act: Activation,
    k11: torch.Tensor,
    k22: torch.Tensor,
    k12: torch.Tensor,
    nodes: int,
    derivative: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    z, w = hermite_rule(nodes, k12)
    shape = k12.shape
    full = np.broadcast_shapes(tuple(k11.shape), tuple(k22.shape), tuple(k12.shape))
    a, b, c = (t.expand(full).reshape(-1) for t in (k11, k22, k12))
    # The rule is not symmetric in (u, v); a canonical order keeps the kernel exactly symmetric.
    a, b = torch.maximum(a, b), torch.minimum(a, b)
    rho = _correlation(a, b, c)
    out_phi = torch.empty_like(c)
    out_dphi = torch.empty_like(c) if derivative else None
    # Chunk over pairs so the (pairs, n, n) grid stays ~16M entries.
    step = max(1, (1 << 24) // (nodes * nodes))
    ww = w[:, None] * w[None, :]
    for s in range(0, c.numel(), step):
        sl = slice(s, s + step)
        r = rho[sl, None, None]
        u = a[sl].clamp_min(0).sqrt()[:, None, None] * z[None, :, None]
        v = b[sl].clamp_min(0).sqrt()[:, None, None] * (
            r * z[None, :, None] + (1 - r * r).clamp_min(0).sqrt() * z[None, None, :]
        )
        u = u.expand_as(v)
        out_phi[sl] = (act(u) * act(v) * ww).sum((-1, -2))
        if out_dphi is not None:
            out_dphi[sl] = (act.derivative(u) * act.derivative(v) * ww).sum((-1, -2))
    return out_phi.reshape(shape), None if out_dphi is None else out_dphi.reshape(shape)


def pair_expectations(
    act: Activation,
    k11: torch.Tensor,
    k22: torch.Tensor,
    k12: torch.Tensor,
    *,
    method: Literal["closed", "quadrature"],
    nodes: int = 64,
    derivative: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``E[phi(u) phi(v)]`` and (optionally) ``E[phi'(u) phi'(v)]`` for ``(u, v)`` centred
    Gaussian with variances ``k11, k22`` and covariance ``k12`` (broadcast together)."""
    if method == "closed":
        if act.name is None:
            raise ValueError("a user callable has no closed form; use method='quadrature'")
        e, d = _closed_pair(act.name, k11, k22, k12)
        return e, (d if derivative else None)
    return _quadrature_pair(act, k11, k22, k12, nodes, derivative)
