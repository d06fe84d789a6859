"""Scale mixtures of NNGPs: Student-t process posterior, general priors, prior samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from torchloom.theory import (
    nngp_kernel,
    nngp_posterior,
    sample_scale_mixture_prior,
    scale_mixture_posterior,
    student_t_log_marginal_likelihood,
    student_t_posterior,
)

F64 = torch.float64


def _problem(n: int = 7, m: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n + m, 3, dtype=F64)
    k = nngp_kernel(x, depth=2, activation="relu", sigma_b2=0.1)
    y = torch.randn(n, dtype=F64)
    return k, y


def test_log_marginal_likelihood_matches_scipy_multivariate_t() -> None:
    k, y = _problem()
    kn = k[:7, :7] + 0.1 * torch.eye(7, dtype=F64)
    for a, b in ((2.0, 1.0), (5.0, 3.0), (0.7, 0.2)):
        ours = float(student_t_log_marginal_likelihood(k[:7, :7], y, alpha=a, beta=b, noise=0.1))
        ref = stats.multivariate_t(loc=np.zeros(7), shape=(b / a) * kn.numpy(), df=2 * a).logpdf(
            y.numpy()
        )
        assert ours == pytest.approx(float(ref), rel=1e-9)


def test_posterior_predictive_is_the_conditional_of_the_joint_t() -> None:
    k, y = _problem()
    a, b, noise = 3.0, 2.0, 0.05
    post = student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, alpha=a, beta=b, noise=noise)
    assert float(post.df) == pytest.approx(2 * a + 7)
    y_star = torch.randn(3, dtype=F64)
    # log p(y_* | y) = log p(y, y_*) - log p(y) under the prior MVT on all noisy observations.
    kn = (k + noise * torch.eye(10, dtype=F64)).numpy()
    joint = stats.multivariate_t(loc=np.zeros(10), shape=(b / a) * kn, df=2 * a)
    marg = stats.multivariate_t(loc=np.zeros(7), shape=(b / a) * kn[:7, :7], df=2 * a)
    ref = joint.logpdf(torch.cat([y, y_star]).numpy()) - marg.logpdf(y.numpy())
    assert float(post.log_prob(y_star, noise=noise)) == pytest.approx(float(ref), rel=1e-9)
    # Univariate marginals agree with the joint's one-dimensional conditionals.
    lp = post.marginal_log_prob(y_star, noise=noise)
    for i in range(3):
        idx = [*range(7), 7 + i]
        j1 = stats.multivariate_t(loc=np.zeros(8), shape=(b / a) * kn[idx][:, idx], df=2 * a)
        ref_i = j1.logpdf(torch.cat([y, y_star[i : i + 1]]).numpy()) - marg.logpdf(y.numpy())
        assert float(lp[i]) == pytest.approx(float(ref_i), rel=1e-9)


def test_reduces_to_nngp_as_prior_concentrates() -> None:
    k, y = _problem()
    mean_gp, cov_gp = nngp_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, noise=0.1)
    errs = []
    for conc in (10.0, 1e3, 1e6):
        post = student_t_posterior(
            k[:7, :7], k[7:, :7], k[7:, 7:], y, alpha=conc, beta=conc, noise=0.1
        )
        torch.testing.assert_close(post.mean, mean_gp)
        errs.append(float((post.covariance - cov_gp).abs().max()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-5


def test_general_prior_by_sampling_matches_closed_form() -> None:
    k, y = _problem()
    a, b = 3.0, 2.0
    post = student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, alpha=a, beta=b, noise=0.1)
    g = torch.Generator().manual_seed(0)
    _, s = sample_scale_mixture_prior(torch.eye(1, dtype=F64), 200000, alpha=a, beta=b, generator=g)
    mc = scale_mixture_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, s, noise=0.1)
    torch.testing.assert_close(mc.mean, post.mean)
    torch.testing.assert_close(mc.covariance, post.covariance, rtol=0.03, atol=1e-8)
    y_star = post.mean + torch.randn(3, dtype=F64)
    torch.testing.assert_close(
        mc.marginal_log_prob(y_star, noise=0.1),
        post.marginal_log_prob(y_star, noise=0.1),
        rtol=0.01,
        atol=0.01,
    )
    # Quadrature nodes with prior log-weights: a point mass at s = 1 gives the NNGP.
    one = scale_mixture_posterior(
        k[:7, :7], k[7:, :7], k[7:, 7:], y, torch.ones(1, dtype=F64), noise=0.1
    )
    _, cov_gp = nngp_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, noise=0.1)
    torch.testing.assert_close(one.covariance, cov_gp)


def test_prior_samples_are_student_t() -> None:
    kern = torch.tensor([[2.0]], dtype=F64)
    a, b = 3.0, 1.5
    f, s = sample_scale_mixture_prior(
        kern, 20000, alpha=a, beta=b, generator=torch.Generator().manual_seed(3)
    )
    ref = stats.t(df=2 * a, scale=math.sqrt(b / a * 2.0))
    ks = stats.kstest(f[:, 0].numpy(), ref.cdf)
    assert ks.pvalue > 1e-3
    gauss = stats.kstest(f[:, 0].numpy(), stats.norm(scale=float(f.std())).cdf)
    assert gauss.statistic > ks.statistic  # heavier tails than the matched Gaussian
    assert float(s.mean()) == pytest.approx(b / (a - 1), rel=0.05)


def test_posterior_scale_adapts_to_residual_size() -> None:
    # The t-process widens its predictive when the data are larger than the prior expects;
    # the GP (fixed s) does not.
    k, y = _problem()
    small = student_t_posterior(
        k[:7, :7], k[7:, :7], k[7:, 7:], 0.1 * y, alpha=3, beta=2, noise=0.1
    )
    big = student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], 10 * y, alpha=3, beta=2, noise=0.1)
    assert float(big.scale.diagonal().min()) > 50 * float(small.scale.diagonal().max())


def test_bad_inputs() -> None:
    k, y = _problem()
    with pytest.raises(ValueError, match="y_train"):
        student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y[:5], alpha=1, beta=1)
    with pytest.raises(ValueError, match="alpha"):
        student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, alpha=-1, beta=1)
    bad = -torch.eye(7, dtype=F64)
    with pytest.raises(ValueError, match="smallest eigenvalue"):
        student_t_posterior(bad, k[7:, :7], k[7:, 7:], y, alpha=1, beta=1)
    with pytest.raises(ValueError, match="scales"):
        scale_mixture_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, -torch.ones(3, dtype=F64))
    post = student_t_posterior(k[:7, :7], k[7:, :7], k[7:, 7:], y, alpha=0.2, beta=1, noise=0.1)
    with pytest.raises(ValueError, match="df"):
        _ = student_t_posterior(
            k[:1, :1], k[7:, :1], k[7:, 7:], y[:1], alpha=0.1, beta=1
        ).covariance
    assert post.mean.shape == (3,)
