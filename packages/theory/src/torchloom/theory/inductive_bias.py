"""Inductive bias as the information needed to single out well-generalising hypotheses.

Boopathy, Yue, Hwang, Iyer & Fiete, *Towards Exact Computation of Inductive Bias* (2024). The
inductive bias a task requires relative to a hypothesis space with sampling distribution
``p(theta)`` is

    I(epsilon) = -log2 P_{theta ~ p}( e(theta) <= epsilon ),

the number of bits that specify hypotheses whose test error reaches ``epsilon`` given the
training budget. ``epsilon`` lies far in the lower tail of the error distribution, beyond
what sampling reaches, so that distribution is modelled. For hypotheses linear in their random
parameters that fit the training set, ``theta = Phi^+ y + P_null z``, the test MSE is exactly a
generalised chi-squared ``e = c + sum_i w_i (z_i + d_i)^2`` (:class:`GeneralizedChi2`,
:func:`interpolating_error_distribution`) whose lower tail this module evaluates with the
Lugannani–Rice saddlepoint formula. For hypothesis spaces only available through samples,
:func:`fit_scaled_noncentral_chi2` is the moment-matched model of the sampled errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats
from scipy.optimize import brentq

from torchloom.core.checks import check_floating, check_ndim, check_positive

__all__ = [
    "GeneralizedChi2",
    "ScaledNoncentralChi2",
    "fit_scaled_noncentral_chi2",
    "inductive_bias_bits",
    "interpolating_error_distribution",
    "interpolating_hypothesis_errors",
]


@dataclass(frozen=True)
class GeneralizedChi2:
    """``Q = offset + sum_i weights_i (z_i + shifts_i)^2`` with ``z ~ N(0, I)``, weights > 0."""

    weights: torch.Tensor
    shifts: torch.Tensor
    offset: float

    def cumulant(self, r: int) -> float:
        """``kappa_r = 2^{r-1} (r-1)! sum w^r (1 + r d^2)`` (+ offset for r = 1)."""
        w, d2 = self.weights.double(), self.shifts.double() ** 2
        k = 2 ** (r - 1) * math.factorial(r - 1) * float((w**r * (1 + r * d2)).sum())
        return k + (self.offset if r == 1 else 0.0)

    def mean(self) -> float:
        return self.cumulant(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.weights.numel(), generator=generator, dtype=torch.float64)
        return self.offset + ((z + self.shifts.double()) ** 2 * self.weights.double()).sum(1)

    def logcdf(self, x: float) -> float:
        """``log P(Q <= x)`` by the Lugannani–Rice saddlepoint approximation (accurate far in
        the lower tail, where Monte Carlo cannot reach); ``-inf`` at or below the offset."""
        s = x - self.offset
        if s <= 0:
            return -math.inf
        w = self.weights.double().numpy()
        d2 = self.shifts.double().numpy() ** 2

        def k0(t: float) -> float:
            u = 1 - 2 * w * t
            return float(np.sum(-0.5 * np.log(u) + d2 * w * t / u))

        def k1(t: float) -> float:
            u = 1 - 2 * w * t
            return float(np.sum(w / u + d2 * w / u**2))

        def k2(t: float) -> float:
            u = 1 - 2 * w * t
            return float(np.sum(2 * w**2 / u**2 + 4 * d2 * w**2 / u**3))

        mean = k1(0.0)
        if s >= mean:
            # Upper half: 1 - upper tail; bracket t in (0, 1 / (2 max w)).
            hi = (1 - 1e-12) / (2 * w.max())
            while k1(hi) < s:  # pragma: no cover - k1 -> inf at the pole
                hi = (hi + 1 / (2 * w.max())) / 2
            lo = 0.0
        else:
            lo = -1.0 / (2 * w.max())
            while k1(lo) > s:
                lo *= 2
            hi = 0.0
        if abs(s - mean) < 1e-10 * mean:
            return math.log(0.5)
        t = brentq(lambda v: k1(v) - s, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500)
        what = math.copysign(math.sqrt(max(2 * (t * s - k0(t)), 0.0)), t)
        uhat = t * math.sqrt(k2(t))
        if what < 0:
            # F = phi(w) [Phi(w)/phi(w) + 1/w - 1/u], the Mills ratio via erfcx for stability.
            mills = math.sqrt(math.pi / 2) * float(special.erfcx(-what / math.sqrt(2)))
            inner = mills + 1 / what - 1 / uhat
            return -0.5 * what * what - 0.5 * math.log(2 * math.pi) + math.log(inner)
        upper = float(stats.norm.sf(what)) - float(stats.norm.pdf(what)) * (1 / what - 1 / uhat)
        return math.log1p(-upper)


@dataclass(frozen=True)
class ScaledNoncentralChi2:
    """``X = floor + scale * chi'^2_df(nc)``: a moment-matched model of sampled errors."""

    scale: float
    df: float
    nc: float
    floor: float = 0.0

    def logcdf(self, x: float) -> float:
        s = x - self.floor
        if s <= 0:
            return -math.inf
        if self.nc <= 0:
            return float(stats.chi2.logcdf(s / self.scale, self.df))
        return float(stats.ncx2.logcdf(s / self.scale, self.df, self.nc))

    def mean(self) -> float:
        return self.floor + self.scale * (self.df + self.nc)


def fit_scaled_noncentral_chi2(errors: torch.Tensor, floor: float = 0.0) -> ScaledNoncentralChi2:
    """Fit ``floor + a chi'^2_k(l)`` to sampled errors ``(S,)`` by matching the mean
    ``a (k + l)``, variance ``2 a^2 (k + 2 l)`` and third central moment ``8 a^3 (k + 3 l)``.
    Eliminating ``k, l`` leaves ``8 m a^2 - 8 v a + mu3 = 0``; the root with ``l >= 0`` is
    used, else (skew beyond what a non-central chi-squared allows) the central two-moment fit.
    """
    e = check_ndim(check_floating(errors, "errors"), "errors", 1, "(S,)").double() - floor
    if e.numel() < 3:
        raise ValueError(f"errors needs at least 3 samples, got {e.numel()}")
    if bool((e < 0).any()):
        raise ValueError(f"errors must be >= floor={floor}, got min {float(e.min()) + floor:.4g}")
    m = float(e.mean())
    v = float(e.var())
    mu3 = float(((e - e.mean()) ** 3).mean())
    if v <= 0 or m <= 0:
        raise ValueError(f"errors must have positive mean and variance, got {m:.3g}, {v:.3g}")
    disc = 64 * v * v - 32 * m * mu3
    if disc >= 0 and mu3 > 0:
        for a in ((8 * v - math.sqrt(disc)) / (16 * m), (8 * v + math.sqrt(disc)) / (16 * m)):
            if a <= 0:
                continue
            lam = v / (2 * a * a) - m / a
            k = m / a - lam
            if lam >= 0 and k > 0:
                return ScaledNoncentralChi2(a, k, lam, floor)
    a = v / (2 * m)
    return ScaledNoncentralChi2(a, m / a, 0.0, floor)


def inductive_bias_bits(model: GeneralizedChi2 | ScaledNoncentralChi2, epsilon: float) -> float:
    """``-log2 P(e <= epsilon)`` under an error model (``inf`` when unreachable)."""
    check_positive(epsilon, "epsilon")
    return -model.logcdf(epsilon) / math.log(2)


def _check_regression(
    features_train: torch.Tensor,
    y_train: torch.Tensor,
    features_test: torch.Tensor,
    y_test: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ft = check_ndim(check_floating(features_train, "features_train"), "features_train", 2, "(n, p)")
    fx = check_ndim(check_floating(features_test, "features_test"), "features_test", 2, "(m, p)")
    n, p = ft.shape
    if fx.shape[1] != p:
        raise ValueError(f"features_test must have {p} columns, got {tuple(fx.shape)}")
    if p <= n:
        raise ValueError(f"need more features than training points (p > n), got p={p}, n={n}")
    yt = check_floating(y_train, "y_train")
    yx = check_floating(y_test, "y_test")
    if yt.shape != (n,) or yx.shape != (fx.shape[0],):
        raise ValueError(
            f"y_train must be ({n},) and y_test ({fx.shape[0]},), got {tuple(yt.shape)}, "
            f"{tuple(yx.shape)}"
        )
    return ft.double(), yt.double(), fx.double(), yx.double()


def _interpolation_basis(ft: torch.Tensor, yt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    theta0 = torch.linalg.lstsq(ft, yt[:, None], driver="gelsd").solution[:, 0]
    _, s, vh = torch.linalg.svd(ft, full_matrices=True)
    rank = int((s > s.max() * max(ft.shape) * torch.finfo(ft.dtype).eps).sum())
    return theta0, vh[rank:].T  # null-space basis (p, p - rank)


def interpolating_hypothesis_errors(
    features_train: torch.Tensor,
    y_train: torch.Tensor,
    features_test: torch.Tensor,
    y_test: torch.Tensor,
    n_hypotheses: int,
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Test MSEs of sampled hypotheses ``f(x) = phi(x) . theta`` that fit the training set:
    ``theta = Phi^+ y + scale * P_null z``, ``z ~ N(0, I / p)``.

    Shapes: ``(n, p)``, ``(n,)``, ``(m, p)``, ``(m,)`` -> ``(n_hypotheses,)``; needs ``p > n``.
    """
    ft, yt, fx, yx = _check_regression(features_train, y_train, features_test, y_test)
    check_positive(scale, "scale", strict=False)
    theta0, null = _interpolation_basis(ft, yt)
    p = ft.shape[1]
    z = torch.randn(n_hypotheses, p, generator=generator, dtype=torch.float64) / math.sqrt(p)
    theta = theta0 + scale * (z @ null) @ null.T
    return ((theta @ fx.T - yx) ** 2).mean(1)


def interpolating_error_distribution(
    features_train: torch.Tensor,
    y_train: torch.Tensor,
    features_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    scale: float = 1.0,
) -> GeneralizedChi2:
    """Exact law of :func:`interpolating_hypothesis_errors`: with
    ``A = scale Phi_test N / sqrt(p)`` (``N`` the null-space basis) and
    ``r = Phi_test Phi^+ y - y_test``, ``e = ||A w + r||^2 / m``, ``w ~ N(0, I)``; in the SVD
    ``A = U S V^T``: weights ``S^2 / m``, shifts ``U^T r / S``, offset
    ``||(I - U U^T) r||^2 / m`` (the best error any hypothesis of the space reaches)."""
    ft, yt, fx, yx = _check_regression(features_train, y_train, features_test, y_test)
    check_positive(scale, "scale")
    theta0, null = _interpolation_basis(ft, yt)
    m, p = fx.shape
    a = scale * (fx @ null) / math.sqrt(p)
    r = fx @ theta0 - yx
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    keep = s > s.max() * max(a.shape) * torch.finfo(a.dtype).eps
    u, s = u[:, keep], s[keep]
    proj = u.T @ r
    offset = float(((r - u @ proj) ** 2).sum() / m)
    return GeneralizedChi2(s**2 / m, proj / s, offset)
