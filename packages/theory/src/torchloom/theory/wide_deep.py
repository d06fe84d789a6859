"""Infinite-depth limits of the NTK of infinitely wide networks, and the classifiers they give.

Radhakrishnan, Belkin & Uhler, *Wide and deep neural networks achieve consistency for
classification* (PNAS 2023). For inputs on the unit sphere, a bias-free network whose
activation ``phi`` is normalised (``E phi(z)^2 = 1``) has, at infinite width, a kernel that
depends on ``xi = x . x'`` only, through the *dual activation*

    k(xi) = E[phi(u) phi(v)],   (u, v) ~ N(0, [[1, xi], [xi, 1]]),   k(1) = 1.

With ``phi = sum_k c_k He_k / sqrt(k!)`` (normalised Hermite expansion, ``sum c_k^2 = 1``),
``k(xi) = sum_k c_k^2 xi^k`` and ``E[phi'(u) phi'(v)] = k'(xi)``. The NTK of depth ``L``
follows Jacot's recursion ``S^0 = xi``, ``S^l = k(S^{l-1})``,
``K^0 = xi``, ``K^l = K^{l-1} k'(S^{l-1}) + S^l``. As ``L -> oo`` the trained network
(kernel regression with ``K^L``) classifies like one of three classical rules:

- ``k(0) != 0`` and ``k'(1) > 1``: every off-diagonal entry tends to one constant while the
  diagonal grows geometrically: **majority vote**;
- ``k(0) = 0`` and ``k'(0) = 0``: ``S^l(xi) ~ xi^{m^l}`` collapses at a rate that separates any
  two similarities infinitely: **1-nearest neighbour** (largest ``k(x . x_i)``, which is the
  largest ``x . x_i`` unless an almost antipodal point wins through an even power);
- ``k(0) = 0`` and ``0 < a = k'(0) < 1``: ``K^L(xi) / (L a^L) -> h(xi)``, the Koenigs function
  of ``k`` (``h(k(xi)) = a h(xi)``), singular at ``xi = 1`` like ``(1 - xi)^{-gamma}`` with
  ``gamma = log(1/a) / log(k'(1))``: a **singular-kernel classifier**
  ``sign(sum_i h(x . x_i) y_i)``.

``k(0) != 0`` with ``k'(1) <= 1`` (normalised ReLU: ``k'(1) = 1``) sends every similarity to 1
only polynomially fast; this module calls that class ``"marginal"`` and assigns no limit.

A singular kernel ``||x - x'||^{-d}`` (the Hilbert kernel, ``gamma = d / 2``) gives a
Bayes-consistent classifier for data of dimension ``d`` (Devroye, Györfi & Krzyżak 1998);
:func:`singular_activation` builds the explicit Hermite-polynomial activation
``phi = sqrt(a) He_1 + sqrt(1 - a) He_m / sqrt(m!)`` with the required exponent.

The recursion here equals :func:`torchloom.theory.ntk_kernel` with ``sigma_w2 = 1``,
``sigma_b2 = 0`` on inputs of norm ``sqrt(D)`` (checked in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from torchloom.core.checks import check_floating, check_int, check_ndim, check_positive

__all__ = [
    "HermiteActivation",
    "deep_ntk",
    "hermite_coefficients",
    "koenigs_kernel",
    "limit_classifier",
    "majority_vote_classifier",
    "nearest_neighbor_classifier",
    "ntk_classifier",
    "singular_activation",
    "singular_kernel_classifier",
]

LimitClass = Literal["majority_vote", "nearest_neighbor", "singular_kernel", "marginal"]


@dataclass(frozen=True)
class HermiteActivation:
    """``phi(z) = sum_k c_k He_k(z) / sqrt(k!)`` with ``sum_k c_k^2 = 1`` (normalised).

    Attributes:
        coefficients: ``(K + 1,)`` float64 normalised Hermite coefficients ``c_k``.
    """

    coefficients: Tensor

    @staticmethod
    def from_coefficients(coefficients: Tensor | list[float]) -> HermiteActivation:
        """Normalise and wrap Hermite coefficients ``c_0 .. c_K``.

        Args:
            coefficients: ``(K + 1,)``; not all zero.

        Returns:
            A :class:`HermiteActivation`.
        """
        c = torch.as_tensor(coefficients, dtype=torch.float64).flatten()
        norm = float(c.norm())
        if c.numel() == 0 or norm == 0 or not math.isfinite(norm):
            raise ValueError(f"coefficients must be finite and not all zero, got {c.tolist()}")
        return HermiteActivation(c / norm)

    def _powers(self) -> Tensor:
        return self.coefficients**2

    def dual(self, xi: Tensor) -> Tensor:
        """Dual activation ``k(xi) = sum c_k^2 xi^k`` elementwise, any shape."""
        out = torch.zeros_like(xi)
        for c2 in reversed(self._powers().tolist()):  # Horner
            out = out * xi + c2
        return out

    def dual_derivative(self, xi: Tensor) -> Tensor:
        """``k'(xi) = sum k c_k^2 xi^{k-1}`` elementwise."""
        p = self._powers()
        d = (p[1:] * torch.arange(1, p.numel(), dtype=p.dtype)).tolist()
        out = torch.zeros_like(xi)
        for c in reversed(d):
            out = out * xi + c
        return out

    def __call__(self, z: Tensor) -> Tensor:
        """``phi(z)`` elementwise (probabilists' Hermite recurrence)."""
        c = self.coefficients.to(z.dtype).tolist()
        h_prev, h = torch.ones_like(z), z
        out = c[0] * h_prev
        for k in range(1, len(c)):
            out = out + c[k] / math.sqrt(math.factorial(k)) * h
            h_prev, h = h, z * h - k * h_prev
        return out

    @property
    def limit_class(self) -> LimitClass:
        """Which classifier the infinitely deep NTK implements (module docstring)."""
        p = self._powers()
        if float(p[0]) > 1e-12:
            slope = float(self.dual_derivative(torch.ones((), dtype=torch.float64)))
            return "majority_vote" if slope > 1 + 1e-9 else "marginal"
        if p.numel() < 2 or float(p[1]) < 1e-12:
            return "nearest_neighbor"
        return "singular_kernel"

    @property
    def singular_exponent(self) -> float:
        """``gamma = log(1 / k'(0)) / log(k'(1))``: ``h(xi) ~ (1 - xi)^{-gamma}``, i.e. the
        limit kernel behaves like ``||x - x'||^{-2 gamma}`` (singular-kernel class only)."""
        if self.limit_class != "singular_kernel":
            raise ValueError(f"no singular exponent for the {self.limit_class} class")
        one = torch.ones((), dtype=torch.float64)
        a, b = float(self.dual_derivative(0 * one)), float(self.dual_derivative(one))
        return math.log(1 / a) / math.log(b)


def hermite_coefficients(
    phi: Callable[[Tensor], Tensor], degree: int = 30, nodes: int = 200
) -> HermiteActivation:
    """Normalised Hermite coefficients of any activation, by Gauss–Hermite quadrature:
    ``c_k = E[phi(z) He_k(z)] / sqrt(k!)`` for ``k <= degree``.

    Args:
        phi: pointwise activation.
        degree: highest Hermite degree kept (the dual is truncated there).
        nodes: quadrature nodes.

    Returns:
        A :class:`HermiteActivation` (normalised, so the dual satisfies ``k(1) = 1``).
    """
    degree = check_int(degree, "degree", minimum=0)
    nodes = check_int(nodes, "nodes", minimum=2)
    z_np, w_np = np.polynomial.hermite_e.hermegauss(nodes)
    z = torch.as_tensor(z_np, dtype=torch.float64)
    w = torch.as_tensor(w_np / math.sqrt(2 * math.pi), dtype=torch.float64)
    fz = phi(z).to(torch.float64)
    coeffs = []
    h_prev, h = torch.ones_like(z), z
    for k in range(degree + 1):
        he = h_prev if k == 0 else h
        coeffs.append(float((w * fz * he).sum()) / math.sqrt(math.factorial(k)))
        if k >= 1:
            h_prev, h = h, z * h - k * h_prev
    return HermiteActivation.from_coefficients(coeffs)


def singular_activation(exponent: float, *, power: int | None = None) -> HermiteActivation:
    """The explicit activation ``phi = sqrt(a) He_1 + sqrt(1 - a) He_m / sqrt(m!)`` whose
    infinitely deep NTK classifier uses the singular kernel ``||x - x'||^{-exponent}``.

    Its dual is ``k(xi) = a xi + (1 - a) xi^m`` with ``gamma = log(1/a) / log(a + m (1 - a))
    = exponent / 2``; ``a`` is found by bisection. ``gamma`` decreases from ``oo`` (``a -> 0``)
    to ``1 / (m - 1)`` (``a -> 1``), so ``m`` defaults to the smallest power that reaches it.
    ``exponent = d`` (the Hilbert kernel for ``d``-dimensional data) gives the Bayes-
    consistent classifier.

    Args:
        exponent: the singularity ``2 gamma > 0``.
        power: ``m >= 2``; chosen automatically when ``None``.

    Returns:
        A :class:`HermiteActivation` of the singular-kernel class.
    """
    check_positive(exponent, "exponent")
    gamma = exponent / 2
    if power is None:
        power = 2
        while 1 / (power - 1) >= gamma:
            power += 1
    m = check_int(power, "power", minimum=2)
    if 1 / (m - 1) >= gamma:
        raise ValueError(f"power={m} cannot reach exponent {exponent}: need 2/(m-1) < exponent")

    def g(a: float) -> float:
        return math.log(1 / a) / math.log(a + m * (1 - a))

    lo, hi = 1e-12, 1 - 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        if g(mid) > gamma:
            lo = mid
        else:
            hi = mid
    a = (lo + hi) / 2
    c = torch.zeros(m + 1, dtype=torch.float64)
    c[1], c[m] = math.sqrt(a), math.sqrt(1 - a)
    return HermiteActivation.from_coefficients(c)


# --------------------------------------------------------------------------- kernels


def _unit(x: Tensor, name: str) -> Tensor:
    x = check_ndim(check_floating(x, name), name, 2, "(N, D)")
    norm = x.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError(f"{name} must not contain zero rows (inputs are projected to the sphere)")
    return x / norm


def _cosines(x1: Tensor, x2: Tensor | None) -> Tensor:
    u1 = _unit(x1, "x1").double()
    if x2 is None:
        xi = (u1 @ u1.T).clamp(-1.0, 1.0)
        # Exact ones on the diagonal: 1 is a repelling fixed point of the dual for deep nets,
        # and a rounding error of 1e-16 would grow geometrically with depth.
        return xi.fill_diagonal_(1.0)
    u2 = _unit(x2, "x2").double()
    if u2.shape[1] != u1.shape[1]:
        raise ValueError(
            f"x1 and x2 need the same dimension, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    return (u1 @ u2.T).clamp(-1.0, 1.0)


def deep_ntk(
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    activation: HermiteActivation,
    depth: int,
    normalize: bool = False,
) -> Tensor:
    """NTK of an infinitely wide, bias-free network with ``depth`` hidden layers on inputs
    projected to the unit sphere (module docstring for the recursion).

    Args:
        x1: ``(N1, D)``. x2: ``(N2, D)``; defaults to ``x1``.
        activation: the (normalised) activation.
        depth: number of hidden layers ``L >= 0``.
        normalize: divide by the diagonal value ``K^L(1)`` (which grows with depth).

    Returns:
        ``(N1, N2)`` float64.
    """
    depth = check_int(depth, "depth", minimum=0)
    xi = _cosines(x1, x2)
    s, k = xi, xi.clone()
    one = torch.ones((), dtype=torch.float64)
    s1, k1 = one.clone(), one.clone()
    for _ in range(depth):
        k = k * activation.dual_derivative(s)
        s = activation.dual(s)
        k = k + s
        k1 = k1 * activation.dual_derivative(s1) + 1.0
    return k / k1 if normalize else k


def koenigs_kernel(
    xi: Tensor, activation: HermiteActivation, *, tol: float = 1e-6, max_iter: int = 100_000
) -> Tensor:
    """The singular limit kernel ``h(xi) = lim_n k^{(n)}(xi) / a^n`` (``a = k'(0)``), the
    Koenigs function of the dual activation: ``lim_L K^L(xi) / (L a^L)``.

    Iterates ``xi -> k(xi)`` until every entry is below ``tol`` (where ``k(s) = a s`` up to a
    relative ``O(tol^{m-1})``, ``m`` the next non-zero power), then divides by ``a^n``.
    ``xi = 1`` gives ``inf``.

    Args:
        xi: cosine similarities in ``[-1, 1]``, any shape.
        activation: an activation of the singular-kernel class.
        tol: size below which ``k(xi) = a xi`` is used.
        max_iter: iteration cap (entries closer to 1 than this allows are returned as inf).

    Returns:
        ``h(xi)``, float64, same shape.
    """
    if activation.limit_class != "singular_kernel":
        raise ValueError(f"activation is of the {activation.limit_class} class, not singular")
    xi = check_floating(xi, "xi").double()
    a = float(activation.dual_derivative(torch.zeros((), dtype=torch.float64)))
    flat = xi.clamp(-1.0, 1.0).reshape(-1).clone()
    steps = torch.zeros_like(flat)
    idx = ((flat.abs() > tol) & (flat.abs() < 1.0)).nonzero()[:, 0]
    cur = flat[idx]
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        cur = activation.dual(cur)
        steps[idx] += 1
        keep = (cur.abs() > tol) & (cur.abs() < 1.0)
        flat[idx] = cur
        idx, cur = idx[keep], cur[keep]
    out = (flat * (steps * math.log(1 / a)).exp()).reshape(xi.shape)
    return torch.where(xi >= 1.0, torch.full_like(out, math.inf), out)


# --------------------------------------------------------------------------- classifiers


def _labels(y: Tensor, n: int) -> tuple[Tensor, int]:
    if y.ndim != 1 or y.shape[0] != n or y.dtype.is_floating_point:
        raise ValueError(f"y_train must be integer labels of shape ({n},), got {y.dtype} {y.shape}")
    return y, int(y.max()) + 1


def ntk_classifier(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    *,
    activation: HermiteActivation,
    depth: int,
) -> Tensor:
    """The infinitely wide network of depth ``depth`` trained to convergence on one-hot
    targets (kernel regression ``K_te,tr K^{-1} Y``), then ``argmax``.

    Args:
        x_train: ``(N, D)``. y_train: ``(N,)`` integer labels. x_test: ``(M, D)``.
        activation: the activation.
        depth: number of hidden layers.

    Returns:
        ``(M,)`` predicted labels.

    Raises:
        ValueError: if a test point's kernel row underflows to zero (too deep for float64).
    """
    y, c = _labels(y_train, x_train.shape[0])
    k_tr = deep_ntk(x_train, activation=activation, depth=depth, normalize=True)
    k_te = deep_ntk(x_test, x_train, activation=activation, depth=depth, normalize=True)
    dead = (k_te == 0).all(1)
    if bool(dead.any()):
        raise ValueError(
            f"the depth-{depth} kernel underflowed to 0 for {int(dead.sum())} test point(s) "
            "(float64 cannot resolve this depth); use a smaller depth"
        )
    onehot = torch.nn.functional.one_hot(y, c).double()
    pred = k_te @ torch.linalg.solve(k_tr, onehot)
    return pred.argmax(1)


def nearest_neighbor_classifier(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    similarity: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """1-NN on the sphere: the label of the training point with the largest
    ``similarity(x . x_i)`` (default: the cosine itself, i.e. the nearest point).

    Args:
        x_train: ``(N, D)``. y_train: ``(N,)``. x_test: ``(M, D)``.
        similarity: an increasing-in-closeness function of the cosine; the depth limit of a
            ``nearest_neighbor``-class activation ranks neighbours by its dual ``k(x . x_i)``
            (which differs from the cosine only when an almost antipodal point beats the
            nearest one, for duals with even powers).

    Returns:
        ``(M,)`` labels.
    """
    _labels(y_train, x_train.shape[0])
    xi = _cosines(x_test, x_train)
    score = xi if similarity is None else similarity(xi)
    return y_train[score.argmax(1)]


def majority_vote_classifier(y_train: Tensor, n_test: int) -> Tensor:
    """The most frequent training label, for every test point (ties: smallest label).

    Args:
        y_train: ``(N,)`` labels.
        n_test: number of test points.

    Returns:
        ``(n_test,)`` labels.
    """
    y, c = _labels(y_train, y_train.shape[0])
    return torch.full((n_test,), int(torch.bincount(y, minlength=c).argmax()), dtype=y.dtype)


def singular_kernel_classifier(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    kernel: Callable[[Tensor], Tensor],
) -> Tensor:
    """``argmax_c sum_{i: y_i = c} kernel(x . x_i)`` (a Nadaraya–Watson vote with a singular
    kernel; a test point equal to a training point takes that point's label).

    Args:
        x_train: ``(N, D)``. y_train: ``(N,)``. x_test: ``(M, D)``.
        kernel: function of the cosine similarity, e.g. ``lambda xi: koenigs_kernel(xi, act)``.

    Returns:
        ``(M,)`` labels.
    """
    y, c = _labels(y_train, x_train.shape[0])
    w = kernel(_cosines(x_test, x_train))
    inf = torch.isinf(w)
    w = torch.where(inf.any(1, keepdim=True), inf.to(w.dtype), w)
    votes = w @ torch.nn.functional.one_hot(y, c).to(w.dtype)
    return votes.argmax(1)


def limit_classifier(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, activation: HermiteActivation
) -> Tensor:
    """The classifier that the infinitely deep NTK of ``activation`` converges to.

    Args:
        x_train: ``(N, D)``. y_train: ``(N,)``. x_test: ``(M, D)``.
        activation: the activation; its :attr:`~HermiteActivation.limit_class` decides.

    Returns:
        ``(M,)`` labels.
    """
    kind = activation.limit_class
    if kind == "marginal":
        raise ValueError("the activation is marginal (k(0) != 0, k'(1) <= 1): no limit is assigned")
    if kind == "majority_vote":
        return majority_vote_classifier(y_train, x_test.shape[0])
    if kind == "nearest_neighbor":
        return nearest_neighbor_classifier(x_train, y_train, x_test, activation.dual)
    return singular_kernel_classifier(
        x_train, y_train, x_test, lambda xi: koenigs_kernel(xi, activation)
    )
