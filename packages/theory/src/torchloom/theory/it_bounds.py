"""Information-theoretic, layer-wise generalisation bounds for deep networks.

He & Goldfeld, *Information-Theoretic Generalization Bounds for Deep Neural Networks* (2024).
Write the network as ``f = f_{>k} o T_k`` with ``T_k`` the representation at layer ``k``. The
loss of an example depends on the input only through ``(T_k, Y)``, so the generalisation gap
``E_train[loss] - E_test[loss]`` is controlled, at *every* layer, by a discrepancy between the
train and test distributions of ``(T_k, Y)``:

- KL bound: for a loss with values in ``[0, B]`` (``B/2``-sub-Gaussian),
  ``|gap| <= sqrt(2 (B/2)^2 D_KL(P_train^k || P_test^k))``; by data processing ``D_KL``
  can only shrink as ``k`` grows (and contracts by the SDPI coefficient of a noisy layer);
- Wasserstein bound: if ``t -> loss(f_{>k}(t), y)`` is ``rho_k``-Lipschitz,
  ``|gap| <= rho_k W_1(P_train^k, P_test^k)``; ``rho_k`` shrinks with ``k`` while ``W_1``
  grows, and the layer where the product is smallest is the *generalisation funnel*.

This module provides the estimators (exact optimal transport between samples, the k-NN KL
estimator of Wang, Kulkarni & Verdú 2009, Gaussian closed forms), spectral-norm Lipschitz
constants of the remaining layers, the per-layer bounds of a trained ``nn.Sequential``, and
Dobrushin/Doeblin contraction coefficients of Gaussian-noise, Dropout and DropConnect layers.
With equal-size, label-stratified samples the Wasserstein bound is a deterministic inequality
between the two samples (checked in the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_int, check_ndim, check_positive

__all__ = [
    "LayerBounds",
    "gaussian_kl",
    "gaussian_mixture_kl",
    "gaussian_w2",
    "knn_kl_divergence",
    "layerwise_bounds",
    "remaining_lipschitz",
    "sdpi_dropconnect",
    "sdpi_dropout",
    "sdpi_gaussian",
    "wasserstein1",
]


def _samples(x: Tensor, name: str) -> Tensor:
    x = check_floating(x, name)
    if x.ndim == 1:
        x = x[:, None]
    return check_ndim(x, name, 2, "(N, D)").reshape(x.shape[0], -1)


def wasserstein1(x: Tensor, y: Tensor) -> float:
    """Exact 1-Wasserstein distance (Euclidean cost) between two empirical measures with the
    same number of atoms, by optimal assignment (``scipy.optimize.linear_sum_assignment``;
    for uniform weights and equal sizes an optimal plan is a permutation).

    Args:
        x: ``(N, D)`` samples. y: ``(N, D)`` samples.

    Returns:
        ``W_1 = min_perm mean_i ||x_i - y_perm(i)||``.
    """
    from scipy.optimize import linear_sum_assignment

    x, y = _samples(x, "x"), _samples(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (N, D), got {x.shape} and {y.shape}")
    cost = torch.cdist(x.double(), y.double())
    r, c = linear_sum_assignment(cost.cpu().numpy())
    return float(cost[torch.as_tensor(r), torch.as_tensor(c)].mean())


def knn_kl_divergence(x: Tensor, y: Tensor, k: int = 1) -> float:
    """k-nearest-neighbour estimate of ``D_KL(P || Q)`` from ``x ~ P`` and ``y ~ Q``
    (Wang, Kulkarni & Verdú 2009):

        D = d/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)),

    ``rho_k(i)`` the distance from ``x_i`` to its k-th neighbour among the other ``x``,
    ``nu_k(i)`` to its k-th neighbour among ``y``. Consistent for continuous densities.

    Args:
        x: ``(n, D)`` samples of ``P``. y: ``(m, D)`` samples of ``Q``.
        k: neighbour order.

    Returns:
        The estimate in nats (can be slightly negative when ``P = Q``).
    """
    x, y = _samples(x, "x").double(), _samples(y, "y").double()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same dimension, got {x.shape} and {y.shape}")
    k = check_int(k, "k")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n <= k or m < k:
        raise ValueError(f"need more than k={k} samples of x and at least k of y")
    dxx = torch.cdist(x, x)
    dxx.fill_diagonal_(math.inf)
    rho = dxx.kthvalue(k, dim=1).values
    nu = torch.cdist(x, y).kthvalue(k, dim=1).values
    tiny = torch.finfo(torch.float64).tiny
    if bool((rho <= 0).any()):
        raise ValueError("x has repeated points: the k-NN estimator needs continuous samples")
    return float(d * (nu.clamp_min(tiny) / rho).log().mean() + math.log(m / (n - 1)))


def gaussian_kl(mu0: Tensor, cov0: Tensor, mu1: Tensor, cov1: Tensor) -> float:
    """``D_KL(N(mu0, cov0) || N(mu1, cov1))`` in closed form.

    Args:
        mu0: ``(D,)``. cov0: ``(D, D)`` positive definite. mu1: ``(D,)``. cov1: ``(D, D)``.

    Returns:
        ``1/2 [tr(S1^-1 S0) + (mu1 - mu0)^T S1^-1 (mu1 - mu0) - D + log det S1 / det S0]``.
    """
    d = mu0.shape[0]
    l1 = torch.linalg.cholesky(cov1.double())
    l0 = torch.linalg.cholesky(cov0.double())
    diff = (mu1 - mu0).double()[:, None]
    a = torch.cholesky_solve(cov0.double(), l1)
    maha = float((diff * torch.cholesky_solve(diff, l1)).sum())
    logdet = 2 * float(l1.diagonal().log().sum() - l0.diagonal().log().sum())
    return 0.5 * (float(a.trace()) + maha - d + logdet)


def gaussian_w2(mu0: Tensor, cov0: Tensor, mu1: Tensor, cov1: Tensor) -> float:
    """2-Wasserstein distance between Gaussians (an upper bound on ``W_1``):
    ``||mu0 - mu1||^2 + tr(S0 + S1 - 2 (S1^{1/2} S0 S1^{1/2})^{1/2})``, square-rooted.

    Args:
        mu0: ``(D,)``. cov0: ``(D, D)`` PSD. mu1: ``(D,)``. cov1: ``(D, D)`` PSD.

    Returns:
        ``W_2``.
    """

    def sqrtm(a: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((a + a.T) / 2)
        return (v * w.clamp_min(0).sqrt()) @ v.T

    s1 = sqrtm(cov1.double())
    cross = sqrtm(s1 @ cov0.double() @ s1)
    val = float((mu0 - mu1).double().pow(2).sum() + (cov0 + cov1).double().trace())
    return math.sqrt(max(val - 2 * float(cross.trace()), 0.0))


def gaussian_mixture_kl(
    centers_p: Tensor,
    centers_q: Tensor,
    noise_std: float,
    *,
    samples: int = 2000,
    generator: torch.Generator | None = None,
) -> float:
    """Monte-Carlo ``D_KL(P || Q)`` between two uniform mixtures of isotropic Gaussians
    ``N(c, s^2 I)`` (the distributions of a representation after Gaussian noise injection:
    ``P`` centred on the training examples' noiseless representations, ``Q`` on test ones):
    ``E_{t ~ P}[log p(t) - log q(t)]`` with exact log-densities by ``logsumexp``.

    Args:
        centers_p: ``(n, D)``. centers_q: ``(m, D)``.
        noise_std: ``s > 0``.
        samples: Monte-Carlo draws from ``P``.
        generator: randomness.

    Returns:
        The estimate in nats.
    """
    cp, cq = _samples(centers_p, "centers_p").double(), _samples(centers_q, "centers_q").double()
    if cp.shape[1] != cq.shape[1]:
        raise ValueError(f"centres need the same dimension, got {cp.shape} and {cq.shape}")
    s = check_positive(noise_std, "noise_std")
    samples = check_int(samples, "samples")
    idx = torch.randint(0, cp.shape[0], (samples,), generator=generator)
    eps = torch.randn(samples, cp.shape[1], generator=generator, dtype=torch.float64)
    t = cp[idx] + s * eps.to(cp.device)

    def log_mix(c: Tensor) -> Tensor:
        d2 = torch.cdist(t, c).pow(2)
        return torch.logsumexp(-d2 / (2 * s * s), dim=1) - math.log(c.shape[0])

    return float((log_mix(cp) - log_mix(cq)).mean())


# --------------------------------------------------------------------------- SDPI


def sdpi_gaussian(radius: float, noise_std: float) -> float:
    """Dobrushin coefficient of ``T' = A + N(0, s^2 I)`` for inputs with ``||A|| <= radius``:
    ``eta_TV = 1 - 2 Q(radius / s) = erf(radius / (s sqrt 2))``; ``eta_KL <= eta_TV``
    (Polyanskiy & Wu), so ``D_{k+1} <= eta D_k`` across a Gaussian-noise layer.

    Args:
        radius: bound on the norm of the noiseless layer output (e.g. ``||W||_2 sqrt(width)``
            after a tanh).
        noise_std: the injected noise ``s > 0``.

    Returns:
        The coefficient in ``[0, 1)``.
    """
    check_positive(radius, "radius", strict=False)
    check_positive(noise_std, "noise_std")
    return math.erf(radius / (noise_std * math.sqrt(2)))


def sdpi_dropout(rate: float, width: int) -> float:
    """Doeblin bound on the contraction coefficient of Dropout on ``width`` units followed by
    a linear layer: with probability ``rate^width`` every unit is dropped and the output
    forgets the input, so ``eta_KL <= eta_TV <= 1 - rate^width``.

    Args:
        rate: drop probability in ``[0, 1]``.
        width: number of units dropped independently.

    Returns:
        The coefficient.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    return 1.0 - rate ** check_int(width, "width")


def sdpi_dropconnect(rate: float, in_features: int, out_features: int) -> float:
    """Doeblin bound for DropConnect (each of the ``in x out`` weights dropped independently):
    ``eta <= 1 - rate^(in * out)``.

    Args:
        rate: drop probability in ``[0, 1]``.
        in_features: input width.
        out_features: output width.

    Returns:
        The coefficient.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    n = check_int(in_features, "in_features") * check_int(out_features, "out_features")
    return 1.0 - rate**n


# --------------------------------------------------------------------------- layer-wise bounds

_ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Identity, nn.LeakyReLU, nn.Dropout)


def remaining_lipschitz(layers: nn.Sequential, start: int) -> float:
    """Upper bound on the Lipschitz constant (Euclidean) of ``layers[start:]``: the product of
    the spectral norms of its ``nn.Linear`` weights (ReLU, tanh, leaky ReLU with slope <= 1,
    identity and dropout in eval mode are 1-Lipschitz).

    Args:
        layers: the network as an ``nn.Sequential``.
        start: index of the first layer of the remainder (``len(layers)`` gives 1).

    Returns:
        ``prod ||W||_2``.
    """
    if not isinstance(layers, nn.Sequential):
        raise TypeError(f"layers must be an nn.Sequential, got {type(layers).__name__}")
    out = 1.0
    for m in list(layers)[start:]:
        if isinstance(m, nn.Linear):
            out *= float(torch.linalg.matrix_norm(m.weight.detach().double(), ord=2))
        elif isinstance(m, nn.Sigmoid):
            out *= 0.25
        elif isinstance(m, nn.LeakyReLU) and abs(m.negative_slope) > 1:
            out *= abs(m.negative_slope)
        elif not isinstance(m, _ONE_LIPSCHITZ):
            raise ValueError(f"no Lipschitz constant known for {type(m).__name__}")
    return out


@dataclass(frozen=True)
class LayerBounds:
    """Per-layer bounds of one trained network (layer 0 is the input).

    Attributes:
        layers: indices ``k`` into the ``nn.Sequential`` after which ``T_k`` is taken.
        gap: measured ``E_test[loss] - E_train[loss]`` of the cross-entropy (averaged over
            the test subsamples).
        gap_01: the same for the 0-1 loss (test error minus training error).
        wasserstein: ``rho_k * sum_y pi_y W_1(train_k | y, test_k | y)`` per layer.
        lipschitz: ``rho_k`` per layer. w1: the class-averaged ``W_1`` per layer.
        kl: ``sum_y pi_y D_KL(train_k | y || test_k | y)`` (k-NN estimate) per layer, or
            ``None`` when not requested.
        kl_bound: ``sqrt(2 (B/2)^2 kl)`` per layer, or ``None``.
        funnel: the position (into ``layers``) of the smallest Wasserstein bound.
    """

    layers: list[int]
    gap: float
    gap_01: float
    wasserstein: list[float]
    lipschitz: list[float]
    w1: list[float]
    kl: list[float] | None
    kl_bound: list[float] | None
    funnel: int


def _representations(layers: nn.Sequential, x: Tensor, idx: list[int]) -> list[Tensor]:
    out, h = [], x
    wanted = set(idx)
    if 0 in wanted:
        out.append(h)
    for i, m in enumerate(layers, start=1):
        h = m(h)
        if i in wanted:
            out.append(h)
    return out


def layerwise_bounds(
    layers: nn.Sequential,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    loss_lipschitz: float = math.sqrt(2),
    loss_bound: float | None = None,
    at: list[int] | None = None,
    test_repeats: int = 5,
    kl_neighbors: int | None = None,
    generator: torch.Generator | None = None,
) -> LayerBounds:
    """Layer-wise Wasserstein (and optionally k-NN KL) generalisation bounds of a trained
    classifier, with the measured gap.

    The loss is cross-entropy on the logits ``layers(x)`` (``sqrt 2``-Lipschitz in the
    logits). For each repeat a label-stratified test subsample with the *same* class counts
    as the training set is drawn, so ``|E_train loss - E_sub loss| <= rho_k sum_y pi_y W_1``
    holds exactly for every layer; gap and bounds are averaged over repeats. With
    ``loss_bound = B`` the KL bound of the 0-1 loss (``B = 1``) is computed too, against the
    0-1 gap, using a ``kl_neighbors``-NN estimate per class (representations must then be
    continuous, e.g. with noise injection).

    Args:
        layers: the network; its output is the logits ``(N, C)``.
        x_train: ``(N, D)``. y_train: ``(N,)`` labels. x_test: ``(M, D)``, ``M >= N`` per
            class. y_test: ``(M,)``.
        loss_lipschitz: Lipschitz constant of the loss in the logits.
        loss_bound: ``B`` for the KL bound (then the gap reported is of the 0-1 loss for the
            KL part, see :attr:`LayerBounds.kl_bound`); ``None`` skips it.
        at: layer indices ``k`` (``T_k = layers[:k](x)``; default: the input, after every
            activation, and the logits).
        test_repeats: number of stratified test subsamples.
        kl_neighbors: ``k`` of the KL estimator (default 1).
        generator: randomness of the subsamples.

    Returns:
        A :class:`LayerBounds`.
    """
    if not isinstance(layers, nn.Sequential):
        raise TypeError(f"layers must be an nn.Sequential, got {type(layers).__name__}")
    x_train, x_test = _samples(x_train, "x_train"), _samples(x_test, "x_test")
    if y_train.shape != (x_train.shape[0],) or y_test.shape != (x_test.shape[0],):
        raise ValueError("y_train and y_test must be (N,) labels matching x_train and x_test")
    if at is None:
        acts = [i + 1 for i, m in enumerate(layers) if not isinstance(m, nn.Linear)]
        at = sorted({0, *acts, len(layers)})
    test_repeats = check_int(test_repeats, "test_repeats")
    classes = sorted(set(y_train.tolist()))
    counts = {c: int((y_train == c).sum()) for c in classes}
    pools = {c: (y_test == c).nonzero()[:, 0] for c in classes}
    for c in classes:
        if pools[c].numel() < counts[c]:
            raise ValueError(
                f"x_test has {pools[c].numel()} examples of class {c}, need >= {counts[c]}"
            )
    n = x_train.shape[0]
    was = layers.training
    layers.eval()
    try:
        with torch.no_grad():
            reps_tr = _representations(layers, x_train, at)
            loss_tr = nn.functional.cross_entropy(layers(x_train), y_train, reduction="none")
            rho = [loss_lipschitz * remaining_lipschitz(layers, k) for k in at]
            err_tr = (layers(x_train).argmax(1) != y_train).double().mean()
            gaps, gaps01, w1s = [], [], []
            for _ in range(test_repeats):
                sub = torch.cat(
                    [
                        pools[c][torch.randperm(pools[c].numel(), generator=generator)][: counts[c]]
                        for c in classes
                    ]
                )
                xs, ys = x_test[sub], y_test[sub]
                reps_te = _representations(layers, xs, at)
                loss_te = nn.functional.cross_entropy(layers(xs), ys, reduction="none")
                gaps.append(float(loss_te.mean() - loss_tr.mean()))
                gaps01.append(float((layers(xs).argmax(1) != ys).double().mean() - err_tr))
                w1s.append(
                    [
                        sum(
                            counts[c] / n * wasserstein1(rt[y_train == c], re[ys == c])
                            for c in classes
                        )
                        for rt, re in zip(reps_tr, reps_te)
                    ]
                )
            w1 = torch.tensor(w1s, dtype=torch.float64).mean(0).tolist()
            bound = [r * w for r, w in zip(rho, w1)]
            kl = kl_bound = None
            if loss_bound is not None:
                b = check_positive(loss_bound, "loss_bound")
                kn = 1 if kl_neighbors is None else kl_neighbors
                reps_full = _representations(layers, x_test, at)
                kl = [
                    sum(
                        counts[c]
                        / n
                        * max(knn_kl_divergence(rt[y_train == c], rf[y_test == c], kn), 0.0)
                        for c in classes
                    )
                    for rt, rf in zip(reps_tr, reps_full)
                ]
                kl_bound = [math.sqrt(2 * (b / 2) ** 2 * d) for d in kl]
    finally:
        layers.train(was)
    funnel = min(range(len(at)), key=lambda i: bound[i])
    g, g01 = sum(gaps) / len(gaps), sum(gaps01) / len(gaps01)
    return LayerBounds(at, g, g01, bound, rho, w1, kl, kl_bound, funnel)
