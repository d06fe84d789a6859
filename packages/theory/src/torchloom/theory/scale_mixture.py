"""Scale mixtures of NNGPs: a prior on the last-layer variance turns the NNGP into a
heavy-tailed process; an inverse-gamma prior gives a Student-t process with closed-form
regression posterior.

Lee, Yun, Yang & Lee, *Scale Mixtures of Neural Network Gaussian Processes* (ICLR 2022).
With the read-out weights ``v ~ N(0, s sigma_v^2 / n)`` and ``s ~ p(s)`` the infinitely wide
network is ``f | s ~ GP(0, s K)`` where ``K`` is the NNGP kernel. For
``s ~ InvGamma(alpha, beta)`` and Gaussian noise scaled with the same ``s``
(``y | f, s ~ N(f, s noise I)``), writing ``K_n = K + noise I``:

    y ~ MVT_{2 alpha}(0, (beta / alpha) K_n),
    s | y ~ InvGamma(alpha + N O / 2, beta + 1/2 sum_o y_o^T K_n^{-1} y_o),
    f_* | y ~ MVT_{2 alpha'}(K_*n K_n^{-1} y, (beta' / alpha') (K_** - K_*n K_n^{-1} K_n*)).

For any other prior (half-Cauchy, log-normal, a point mass …) ``s | y`` is handled by
self-normalised importance weights over samples or quadrature nodes of ``s``, and the
predictive is a finite Gaussian scale mixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_ndim, check_positive
from torchloom.theory.ntk import _check_kernels

__all__ = [
    "GaussianScaleMixturePosterior",
    "StudentTPosterior",
    "sample_scale_mixture_prior",
    "scale_mixture_posterior",
    "student_t_log_marginal_likelihood",
    "student_t_posterior",
]


def _cholesky(kn: torch.Tensor) -> torch.Tensor:
    chol, info = torch.linalg.cholesky_ex(kn)
    if int(info) != 0:
        evals = torch.linalg.eigvalsh((kn + kn.T) / 2)
        raise ValueError(
            "k_train_train + noise I is not positive definite: smallest eigenvalue "
            f"{float(evals[0]):.3e}; pass noise > 0"
        )
    return chol


@dataclass(frozen=True)
class _GaussianPart:
    mean: torch.Tensor  # (M, O)
    base_cov: torch.Tensor  # (M, M): K_** - K_*n K_n^{-1} K_n*
    quad: torch.Tensor  # sum_o y_o^T K_n^{-1} y_o
    logdet: torch.Tensor  # log |K_n|
    n_obs: int  # N * O


def _condition(
    k: torch.Tensor, kx: torch.Tensor, kt: torch.Tensor, y: torch.Tensor, noise: float
) -> _GaussianPart:
    n = k.shape[0]
    kn = k + noise * torch.eye(n, dtype=k.dtype, device=k.device)
    chol = _cholesky(kn)
    alpha = torch.cholesky_solve(y, chol)
    v = torch.linalg.solve_triangular(chol, kx.T, upper=False)
    return _GaussianPart(
        mean=kx @ alpha,
        base_cov=kt - v.T @ v,
        quad=(y * alpha).sum(),
        logdet=2 * chol.diagonal().log().sum(),
        n_obs=y.numel(),
    )


def _mvt_log_prob(
    x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, df: torch.Tensor
) -> torch.Tensor:
    """Log density of a multivariate t over the first axis, per output column: ``(O,)``."""
    d = x.shape[0]
    chol = _cholesky(scale)
    z = torch.linalg.solve_triangular(chol, x - mean, upper=False)
    maha = (z * z).sum(0)
    logdet = 2 * chol.diagonal().log().sum()
    return (
        torch.lgamma((df + d) / 2)
        - torch.lgamma(df / 2)
        - d / 2 * torch.log(df * math.pi)
        - logdet / 2
        - (df + d) / 2 * torch.log1p(maha / df)
    )


def _check_value(value: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    value = check_floating(value, "value")
    if value.shape != mean.shape:
        raise ValueError(f"value must have shape {tuple(mean.shape)}, got {tuple(value.shape)}")
    return value


@dataclass(frozen=True)
class StudentTPosterior:
    """Predictive of the Student-t process: ``f_* ~ MVT_df(mean, scale)`` per output column.

    ``mean (M,)`` or ``(M, O)``; ``scale (M, M)`` shared by the outputs; ``df = 2 alpha'``;
    ``alpha``, ``beta`` the inverse-gamma posterior of the last-layer scale ``s``.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    df: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor

    @property
    def covariance(self) -> torch.Tensor:
        """``df / (df - 2) * scale`` (finite for ``df > 2``)."""
        if float(self.df) <= 2:
            raise ValueError(f"the covariance is infinite for df <= 2, got df={float(self.df)}")
        return self.df / (self.df - 2) * self.scale

    def log_prob(self, value: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Joint log density of ``value`` (shaped like ``mean``) summed over outputs; ``noise``
        adds the (scaled) observation noise to predict ``y_*`` instead of ``f_*``."""
        value = check_floating(value, "value")
        if value.shape != self.mean.shape:
            raise ValueError(
                f"value must have shape {tuple(self.mean.shape)}, got {tuple(value.shape)}"
            )
        m = self.mean if self.mean.dim() == 2 else self.mean[:, None]
        x = value if value.dim() == 2 else value[:, None]
        eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        scale = self.scale + noise * (self.beta / self.alpha) * eye
        return _mvt_log_prob(x, m, scale, self.df).sum()

    def marginal_log_prob(self, value: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Per-point log densities (univariate t marginals), shaped like ``mean``."""
        value = check_floating(value, "value")
        if value.shape != self.mean.shape:
            raise ValueError(
                f"value must have shape {tuple(self.mean.shape)}, got {tuple(value.shape)}"
            )
        var = self.scale.diagonal() + noise * self.beta / self.alpha
        if self.mean.dim() == 2:
            var = var[:, None]
        t = torch.distributions.StudentT(self.df, self.mean, var.sqrt())
        return t.log_prob(value)


def student_t_posterior(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    k_test_test: torch.Tensor,
    y_train: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    noise: float = 0.0,
) -> StudentTPosterior:
    """Closed-form Student-t process regression (inverse-gamma scale prior ``InvGamma(alpha,
    beta)`` on the last-layer variance; Lee et al. 2022, Sec. 3.2).

    Shapes: ``(N, N)``, ``(M, N)``, ``(M, M)``, ``y_train (N,)`` or ``(N, O)``.
    As ``alpha = beta -> inf`` the prior concentrates at ``s = 1`` and this reduces to the
    NNGP posterior (:func:`torchloom.theory.nngp_posterior`).
    """
    k, kx, kt, y, squeeze = _check_kernels(k_train_train, k_test_train, k_test_test, y_train)
    a0 = check_positive(alpha, "alpha")
    b0 = check_positive(beta, "beta")
    check_positive(noise, "noise", strict=False)
    g = _condition(k, kx, kt, y, noise)
    a = torch.as_tensor(a0 + g.n_obs / 2, dtype=k.dtype, device=k.device)
    b = b0 + g.quad / 2
    mean = g.mean[:, 0] if squeeze else g.mean
    return StudentTPosterior(mean, (b / a) * g.base_cov, 2 * a, a, b)


def student_t_log_marginal_likelihood(
    k_train_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    noise: float = 0.0,
) -> torch.Tensor:
    """``log p(y)`` under the Student-t process: ``y ~ MVT_{2 alpha}(0, beta/alpha K_n)`` for one
    output; outputs sharing the scale ``s`` are integrated jointly (differentiable in the
    kernel, ``alpha``, ``beta`` if they are tensors upstream)."""
    k = check_ndim(check_floating(k_train_train, "k_train_train"), "k_train_train", 2, "(N, N)")
    n = k.shape[0]
    y = check_floating(y_train, "y_train")
    if y.dim() not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, O), got {tuple(y.shape)}")
    y2 = y[:, None] if y.dim() == 1 else y
    a0 = check_positive(alpha, "alpha")
    b0 = check_positive(beta, "beta")
    check_positive(noise, "noise", strict=False)
    kn = k + noise * torch.eye(n, dtype=k.dtype, device=k.device)
    chol = _cholesky(kn)
    z = torch.linalg.solve_triangular(chol, y2, upper=False)
    quad = (z * z).sum()
    logdet = 2 * chol.diagonal().log().sum()
    d = y2.numel()
    o = y2.shape[1]
    a1 = a0 + d / 2
    b1 = b0 + quad / 2
    return (
        math.lgamma(a1)
        - math.lgamma(a0)
        + a0 * math.log(b0)
        - a1 * torch.log(b1)
        - d / 2 * math.log(2 * math.pi)
        - o / 2 * logdet
    )


@dataclass(frozen=True)
class GaussianScaleMixturePosterior:
    """Predictive under a general scale prior: ``f_* ~ sum_i w_i N(mean, s_i base_cov)``.

    ``scales (S,)`` and ``weights (S,)`` (posterior weights, summing to one), ``mean`` as
    the GP mean, ``base_cov (M, M)``.
    """

    mean: torch.Tensor
    base_cov: torch.Tensor
    scales: torch.Tensor
    weights: torch.Tensor

    @property
    def covariance(self) -> torch.Tensor:
        return (self.weights * self.scales).sum() * self.base_cov

    @property
    def effective_sample_size(self) -> float:
        return float(1.0 / (self.weights**2).sum())

    def marginal_log_prob(self, value: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Per-point log densities of the mixture, shaped like ``mean``."""
        value = check_floating(value, "value")
        if value.shape != self.mean.shape:
            raise ValueError(
                f"value must have shape {tuple(self.mean.shape)}, got {tuple(value.shape)}"
            )
        var = self.base_cov.diagonal() + noise
        if self.mean.dim() == 2:
            var = var[:, None]
        sv = self.scales.reshape(-1, *([1] * self.mean.dim())) * var
        comp = -0.5 * (torch.log(2 * math.pi * sv) + (value - self.mean) ** 2 / sv)
        logw = self.weights.clamp_min(torch.finfo(self.weights.dtype).tiny).log()
        return torch.logsumexp(comp + logw.reshape(-1, *([1] * self.mean.dim())), dim=0)


def scale_mixture_posterior(
    k_train_train: torch.Tensor,
    k_test_train: torch.Tensor,
    k_test_test: torch.Tensor,
    y_train: torch.Tensor,
    scales: torch.Tensor,
    *,
    log_weights: torch.Tensor | None = None,
    noise: float = 0.0,
) -> GaussianScaleMixturePosterior:
    """Posterior predictive for any prior on the last-layer scale, given ``scales (S,)`` drawn
    from the prior (``log_weights=None``) or quadrature nodes with prior ``log_weights (S,)``.

    ``p(s_i | y) ∝ w_i N(y; 0, s_i K_n)`` (self-normalised importance weights).
    """
    k, kx, kt, y, squeeze = _check_kernels(k_train_train, k_test_train, k_test_test, y_train)
    s = check_ndim(check_floating(scales, "scales"), "scales", 1, "(S,)")
    if bool((s <= 0).any()):
        raise ValueError(f"scales must be > 0, got min {float(s.min()):.3g}")
    check_positive(noise, "noise", strict=False)
    g = _condition(k, kx, kt, y, noise)
    loglik = -0.5 * (g.n_obs * torch.log(2 * math.pi * s) + g.quad / s)
    if log_weights is not None:
        lw = check_ndim(check_floating(log_weights, "log_weights"), "log_weights", 1, "(S,)")
        if lw.shape != s.shape:
            raise ValueError(f"log_weights must have shape {tuple(s.shape)}, got {tuple(lw.shape)}")
        loglik = loglik + lw
    w = torch.softmax(loglik, dim=0)
    mean = g.mean[:, 0] if squeeze else g.mean
    return GaussianScaleMixturePosterior(mean, g.base_cov, s, w)


def sample_scale_mixture_prior(
    kernel: torch.Tensor,
    n_samples: int,
    *,
    alpha: float,
    beta: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``f ~ GP(0, s K)`` with ``s ~ InvGamma(alpha, beta)``: returns ``f (n_samples, N)``
    and the scales ``(n_samples,)`` (a Student-t process sample, Lee et al. Thm. 3.1)."""
    k = check_ndim(check_floating(kernel, "kernel"), "kernel", 2, "(N, N)")
    check_positive(alpha, "alpha")
    check_positive(beta, "beta")
    n = k.shape[0]
    jitter = 1e-10 * float(k.diagonal().mean().clamp_min(1e-30))
    chol = _cholesky(k + jitter * torch.eye(n, dtype=k.dtype, device=k.device))
    # torch.distributions.Gamma takes no generator: sample it under a forked global RNG
    # seeded from ``generator`` so the caller's global state is untouched.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gam = torch.distributions.Gamma(
            torch.tensor(float(alpha), dtype=torch.float64),
            torch.tensor(float(beta), dtype=torch.float64),
        ).sample((n_samples,))
    s = (1.0 / gam).to(k.dtype).to(k.device)
    z = rng.randn((n_samples, n), generator=generator, dtype=k.dtype, device=k.device)
    return s.sqrt()[:, None] * (z @ chol.T), s
