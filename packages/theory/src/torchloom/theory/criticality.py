"""Kernel recursions, susceptibilities, criticality and the leading finite-width correction.

Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022), Ch. 4-5. An MLP

    z^{(1)} = b^{(1)} + W^{(1)} x,   z^{(l+1)} = b^{(l+1)} + W^{(l+1)} sigma(z^{(l)}),
    b ~ N(0, C_b),  W_ij ~ N(0, C_W / n_l),

has, at infinite width, the kernel recursion (Eq. 4.118)

    K^{(1)}_{ab} = C_b + C_W x_a . x_b / n_0,
    K^{(l+1)}_{ab} = C_b + C_W <sigma(z_a) sigma(z_b)>_{K^{(l)}},

with parallel and perpendicular susceptibilities (Eq. 5.50, 5.51)

    chi_par(K)  = C_W / K <z sigma(z) sigma'(z)>_K = C_W / (2 K^2) <sigma^2 (z^2 - K)>_K,
    chi_perp(K) = C_W <sigma'(z)^2>_K.

Criticality is a fixed point ``K*`` with ``chi_par(K*) = chi_perp(K*) = 1``: (C_b, C_W) = (0, 2)
for ReLU (scale-invariant class, any K* works), (0, 1/sigma'(0)^2) for the K* = 0 class (tanh,
erf, sin), where kernels approach 0 as a power law in depth. At finite width ``n`` the
single-input four-point vertex obeys (Eq. 4.90, equal widths)

    V^{(1)} = 0,   V^{(l+1)} = C_W^2 [<sigma^4>_K - <sigma^2>_K^2] + chi_par(K^{(l)})^2 V^{(l)},

and the connected four-point function of one neuron is ``E[z^4] - 3 E[z^2]^2 = 3 V^{(l)} / n``
at leading order: it grows linearly with depth at criticality, so ``L / n`` (the aspect ratio)
controls the deviation from the Gaussian (infinite-width) description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import brentq

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.theory._gaussian import (
    ActivationLike,
    Method,
    gaussian_expectation,
    get_activation,
    pair_expectations,
    resolve_method,
)

__all__ = [
    "Criticality",
    "FourPointResult",
    "MonteCarloMoments",
    "critical_initialization",
    "four_point_vertex",
    "input_kernel",
    "kernel_recursion",
    "monte_carlo_moments",
    "sample_preactivations",
    "susceptibilities",
]

Universality = Literal["scale_invariant", "k_star_zero", "nontrivial_fixed_point"]


def input_kernel(x: torch.Tensor, c_w: float, c_b: float) -> torch.Tensor:
    """First-layer kernel ``K^{(1)} = C_b + C_W x x^T / n_0``; ``x (N, n_0)`` -> ``(N, N)``."""
    x = check_ndim(check_floating(x, "x"), "x", 2, "(N, n_0)")
    check_positive(c_w, "c_w", strict=False)
    check_positive(c_b, "c_b", strict=False)
    return c_b + c_w * (x @ x.T) / x.shape[1]


def kernel_recursion(
    k1: torch.Tensor,
    depth: int,
    *,
    activation: ActivationLike = "relu",
    c_w: float = 2.0,
    c_b: float = 0.0,
    method: Method = "auto",
    nodes: int = 64,
) -> torch.Tensor:
    """Iterate ``K^{(l+1)} = C_b + C_W <sigma sigma>_{K^{(l)}}`` from the ``(N, N)`` kernel
    ``k1`` (e.g. :func:`input_kernel`). Returns ``(depth, N, N)``: ``K^{(1)} ... K^{(depth)}``."""
    k = check_ndim(check_floating(k1, "k1"), "k1", 2, "(N, N)")
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"k1 must be square, got {tuple(k.shape)}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    check_positive(c_w, "c_w", strict=False)
    check_positive(c_b, "c_b", strict=False)
    act = get_activation(activation)
    how = resolve_method(act, method)
    out = [k]
    for _ in range(depth - 1):
        d = k.diagonal()
        e, _ = pair_expectations(
            act, d[:, None], d[None, :], k, method=how, nodes=nodes, derivative=False
        )
        k = c_b + c_w * e
        k = (k + k.T) / 2
        out.append(k)
    return torch.stack(out)


def susceptibilities(
    k: torch.Tensor | float,
    *,
    activation: ActivationLike = "relu",
    c_w: float = 2.0,
    nodes: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chi_par, chi_perp)`` at single-input kernel value(s) ``k > 0`` (any shape)."""
    kt = torch.as_tensor(k, dtype=torch.float64) if not isinstance(k, torch.Tensor) else k
    kt = check_floating(kt, "k")
    if bool((kt <= 0).any()):
        raise ValueError(f"k must be > 0, got min {float(kt.min()):.3g}")
    check_positive(c_w, "c_w", strict=False)
    act = get_activation(activation)
    zss = gaussian_expectation(lambda z: z * act(z) * act.derivative(z), kt, nodes)
    dd = gaussian_expectation(lambda z: act.derivative(z) ** 2, kt, nodes)
    return c_w * zss / kt, c_w * dd


@dataclass(frozen=True)
class Criticality:
    """Critical initialisation hyperparameters and the fixed point they tune to."""

    c_b: float
    c_w: float
    k_star: float
    universality: Universality


def _is_scale_invariant(act: ActivationLike) -> bool:
    a = get_activation(act)
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    return all(torch.allclose(a(s * z), s * a(z), atol=1e-10) for s in (0.5, 2.0, 3.7))


def critical_initialization(
    activation: ActivationLike, *, nodes: int = 200, k_range: tuple[float, float] = (1e-3, 1e3)
) -> Criticality:
    """Critical ``(C_b, C_W)`` for ``activation`` (Roberts et al., Sec. 5.2-5.4).

    * scale-invariant activations (ReLU, linear, leaky ReLU): ``C_b = 0``,
      ``C_W = 1 / <sigma'^2>`` (2 for ReLU); every ``K`` is a fixed point.
    * a nontrivial fixed point ``K* > 0`` solving ``<z sigma sigma'>_{K*} = K* <sigma'^2>_{K*}``
      (GELU, SWISH): ``C_W = 1 / <sigma'^2>_{K*}``, ``C_b = K* - C_W <sigma^2>_{K*}``.
    * otherwise, when ``sigma(0) = 0`` and ``sigma'(0) != 0`` (tanh, erf, sin): the ``K* = 0``
      class with ``C_b = 0``, ``C_W = 1 / sigma'(0)^2``.
    """
    act = get_activation(activation)
    one = torch.ones((), dtype=torch.float64)
    if _is_scale_invariant(act):
        dd = float(gaussian_expectation(lambda z: act.derivative(z) ** 2, one, nodes))
        return Criticality(0.0, 1.0 / dd, 1.0, "scale_invariant")

    def h(k: torch.Tensor) -> torch.Tensor:
        zss = gaussian_expectation(lambda z: z * act(z) * act.derivative(z), k, nodes)
        dd = gaussian_expectation(lambda z: act.derivative(z) ** 2, k, nodes)
        return zss / k - dd

    def h_scalar(k: float) -> float:
        return float(h(torch.tensor(k, dtype=torch.float64)))

    grid = np.geomspace(k_range[0], k_range[1], 121)
    vals = h(torch.as_tensor(grid, dtype=torch.float64)).tolist()
    for lo, hi, vlo, vhi in zip(grid[:-1], grid[1:], vals[:-1], vals[1:]):
        if vlo == 0 or vlo * vhi < 0:
            kstar = float(brentq(h_scalar, lo, hi, xtol=1e-12)) if vlo != 0 else float(lo)
            kt = torch.tensor(kstar, dtype=torch.float64)
            dd = float(gaussian_expectation(lambda z: act.derivative(z) ** 2, kt, nodes))
            ss = float(gaussian_expectation(lambda z: act(z) ** 2, kt, nodes))
            c_w = 1.0 / dd
            c_b = kstar - c_w * ss
            if c_b >= 0:
                return Criticality(c_b, c_w, kstar, "nontrivial_fixed_point")
    zero = torch.zeros(1, dtype=torch.float64)
    s0 = float(act(zero))
    d0 = float(act.derivative(zero))
    if abs(s0) < 1e-12 and abs(d0) > 1e-12:
        return Criticality(0.0, 1.0 / d0**2, 0.0, "k_star_zero")
    raise ValueError(
        f"no critical initialisation found for activation {act.name or act.fn!r}: no fixed point "
        f"with chi_par = chi_perp = 1 in k_range={k_range} and sigma(0)={s0:.3g}"
    )


@dataclass(frozen=True)
class FourPointResult:
    """Leading-order single-input statistics per layer ``l = 1..L``: kernel ``k``, vertex ``v``
    and the predicted connected four-point function ``3 v / width`` (``(L,)`` each)."""

    k: torch.Tensor
    v: torch.Tensor
    chi_par: torch.Tensor
    connected_four_point: torch.Tensor


def four_point_vertex(
    k1: float,
    depth: int,
    width: int,
    *,
    activation: ActivationLike = "relu",
    c_w: float = 2.0,
    c_b: float = 0.0,
    nodes: int = 200,
) -> FourPointResult:
    """Single-input kernel and four-point vertex through ``depth`` layers of equal ``width``
    (Roberts et al. Eq. 4.90 with n_l = n_{l-1}); ``k1`` is the first-layer kernel."""
    check_positive(k1, "k1")
    check_positive(c_w, "c_w", strict=False)
    check_positive(c_b, "c_b", strict=False)
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    act = get_activation(activation)
    k = torch.tensor(float(k1), dtype=torch.float64)
    v = torch.zeros((), dtype=torch.float64)
    ks, vs, chis = [], [], []
    for layer in range(depth):
        chi, _ = susceptibilities(k, activation=act, c_w=c_w, nodes=nodes)
        ks.append(k)
        vs.append(v)
        chis.append(chi)
        if layer == depth - 1:
            break
        s2 = gaussian_expectation(lambda z: act(z) ** 2, k, nodes)
        s4 = gaussian_expectation(lambda z: act(z) ** 4, k, nodes)
        v = c_w**2 * (s4 - s2 * s2) + chi * chi * v
        k = c_b + c_w * s2
    kk, vv = torch.stack(ks), torch.stack(vs)
    return FourPointResult(kk, vv, torch.stack(chis), 3 * vv / width)


def sample_preactivations(
    x: torch.Tensor,
    width: int,
    depth: int,
    n_networks: int,
    *,
    activation: ActivationLike = "relu",
    c_w: float = 2.0,
    c_b: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Preactivations of ``n_networks`` independent random MLPs (batched, one matmul per layer).

    Shapes: ``x (N, n_0)`` -> ``depth`` tensors ``(n_networks, N, width)``, layers ``1..depth``.
    Weights are drawn on the CPU ``generator`` and moved to ``x``'s device.
    """
    x = check_ndim(check_floating(x, "x"), "x", 2, "(N, n_0)")
    if width < 1 or depth < 1 or n_networks < 1:
        raise ValueError(
            f"width, depth and n_networks must be >= 1, got {width}, {depth}, {n_networks}"
        )
    check_positive(c_w, "c_w", strict=False)
    check_positive(c_b, "c_b", strict=False)
    act = get_activation(activation)

    def draw(*shape: int) -> torch.Tensor:
        return rng.randn(shape, generator=generator, dtype=x.dtype, device=x.device)

    h = x.expand(n_networks, *x.shape)
    out = []
    for layer in range(depth):
        n_in = h.shape[-1]
        w = draw(n_networks, n_in, width) * math.sqrt(c_w / n_in)
        b = draw(n_networks, 1, width) * math.sqrt(c_b)
        z = torch.bmm(h if layer == 0 else act(h), w) + b
        out.append(z)
        h = z
    return out


@dataclass(frozen=True)
class MonteCarloMoments:
    """Single-input moments estimated from sampled networks, with standard errors."""

    k: float
    k_se: float
    connected_four_point: float
    connected_four_point_se: float


def monte_carlo_moments(z: torch.Tensor) -> MonteCarloMoments:
    """``E[z^2]`` and ``E[z^4] - 3 E[z^2]^2`` from ``z (n_networks, width)`` preactivations of
    one input. Standard errors come from the spread of per-network averages (neurons of one
    network are exchangeable but not independent)."""
    z = check_ndim(check_floating(z, "z"), "z", 2, "(n_networks, width)")
    m = z.shape[0]
    if m < 2:
        raise ValueError(f"z needs at least 2 networks, got {m}")
    z = z.double()
    m2 = (z**2).mean(1)
    m4 = (z**4).mean(1)
    k = float(m2.mean())
    # Delta method for g(a, b) = b - 3 a^2 on the per-network means.
    g = m4 - 6 * k * m2
    c4 = float(m4.mean()) - 3 * k * k
    return MonteCarloMoments(
        k=k,
        k_se=float(m2.std() / math.sqrt(m)),
        connected_four_point=c4,
        connected_four_point_se=float(g.std() / math.sqrt(m)),
    )
