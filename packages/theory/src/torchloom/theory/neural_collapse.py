"""Neural collapse metrics (NC1-NC4) and the predicted geometry of deep linear networks.

Papyan, Han & Donoho (2020) define the four collapse properties; Dang, Tran, Osher, Tran-The,
Ho & Nguyen, *Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data*
(ICML 2023), prove them for the deep linear unconstrained-feature model

    min  1/(2N) ||W_M ... W_1 H (+ b 1^T) - Y||_F^2 + sum_m lambda_m/2 ||W_m||_F^2
         + lambda_H/2 ||H||_F^2,

with ``H`` (d, N) free features and ``Y`` one-hot. With an unregularised bias and balanced
classes the class means form a simplex ETF; bias-free with class sizes ``n_1 >= ... >= n_K``
they are **orthogonal**, with lengths fixed by the class sizes. Collapsing each class to its
mean (NC1) and writing ``D = diag(n_k)``, ``Z = W_M ... W_1 H_bar D^{1/2}`` reduces the problem
to ``min_Z 1/(2N) ||Z - D^{1/2}||^2 + c sum_j sigma_j(Z)^{2/(M+1)}`` with
``c = (M+1)/2 (lambda_H prod_m lambda_m)^{1/(M+1)}``, solved per class by a scalar problem
(:func:`imbalanced_collapse_geometry`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar

from torchloom.core.checks import check_floating, check_ndim, check_positive, check_tensor

__all__ = [
    "CollapseGeometry",
    "NeuralCollapseMetrics",
    "class_means",
    "etf_distance",
    "imbalanced_collapse_geometry",
    "nc1",
    "nc3",
    "nc4",
    "neural_collapse_metrics",
    "orthogonal_frame_distance",
]


def _check_features(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    h = check_ndim(check_floating(features, "features"), "features", 2, "(N, d)")
    y = check_tensor(labels, "labels")
    if y.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.bool):
        raise TypeError(f"labels must be an integer tensor, got dtype {y.dtype}")
    if y.shape != (h.shape[0],):
        raise ValueError(f"labels must have shape ({h.shape[0]},), got {tuple(y.shape)}")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(y.min())}, {int(y.max())}]")
    counts = torch.bincount(y, minlength=k)
    if bool((counts == 0).any()):
        raise ValueError(
            f"every class needs a sample; empty classes {counts.eq(0).nonzero()[:, 0].tolist()}"
        )
    return h, y, k


def class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means ``(K, d)`` and the global mean ``(d,)`` (mean of all samples)."""
    h, y, k = _check_features(features, labels, num_classes)
    sums = torch.zeros(k, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, y, h)
    counts = torch.bincount(y, minlength=k).to(h.dtype)
    return sums / counts[:, None], h.mean(0)


def nc1(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """NC1 = tr(Sigma_W Sigma_B^+) / K: within-class variability relative to the between-class
    spread (Papyan et al. 2020, Fig. 6). 0 under collapse."""
    h, y, k = _check_features(features, labels, num_classes)
    means, glob = class_means(h, y, k)
    centred = h - means[y]
    sigma_w = centred.T @ centred / h.shape[0]
    mb = means - glob
    sigma_b = mb.T @ mb / k
    return torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / k


def etf_distance(m: torch.Tensor) -> torch.Tensor:
    """Distance of the rows of ``m`` (K, d) to a simplex ETF (Dang et al. Eq. NC2):
    ``|| M M^T / ||M M^T||_F - (I - 11^T / K) / sqrt(K - 1) ||_F``. Invariant to rotations and
    scale of ``m``; 0 iff the rows are equinorm, equiangular with cosine ``-1/(K-1)``."""
    m = check_ndim(check_floating(m, "m"), "m", 2, "(K, d)")
    k = m.shape[0]
    if k < 2:
        raise ValueError(f"m needs at least 2 rows, got {k}")
    g = m @ m.T
    eye = torch.eye(k, dtype=m.dtype, device=m.device)
    target = (eye - 1.0 / k) / math.sqrt(k - 1)
    return torch.linalg.norm(g / torch.linalg.norm(g) - target)


def orthogonal_frame_distance(m: torch.Tensor) -> torch.Tensor:
    """Largest ``|cos|`` between two distinct rows of ``m`` (K, d): 0 iff the rows are
    mutually orthogonal (the bias-free geometry of Dang et al., Thm. 4.1/5.1)."""
    m = check_ndim(check_floating(m, "m"), "m", 2, "(K, d)")
    u = m / m.norm(dim=1, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
    c = u @ u.T
    c = c - torch.diag(torch.diagonal(c))
    return c.abs().max()


def nc3(weight: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """NC3 (self-duality): ``|| W / ||W||_F - M / ||M||_F ||_F`` for the classifier ``W`` (K, d)
    and the (centred) class means ``M`` (K, d)."""
    w = check_ndim(check_floating(weight, "weight"), "weight", 2, "(K, d)")
    m = check_ndim(check_floating(means, "means"), "means", 2, "(K, d)")
    if w.shape != m.shape:
        raise ValueError(
            f"weight and means must have the same shape, got {tuple(w.shape)} and {tuple(m.shape)}"
        )
    return torch.linalg.norm(w / torch.linalg.norm(w) - m / torch.linalg.norm(m))


def nc4(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """NC4: fraction of samples where the classifier ``argmax(W h + b)`` disagrees with the
    nearest class centre ``argmin_k ||h - mu_k||``. 0 under collapse."""
    h, y, k = _check_features(features, labels, num_classes)
    w = check_ndim(check_floating(weight, "weight"), "weight", 2, "(K, d)")
    if w.shape != (k, h.shape[1]):
        raise ValueError(f"weight must have shape ({k}, {h.shape[1]}), got {tuple(w.shape)}")
    logits = h @ w.T
    if bias is not None:
        if bias.shape != (k,):
            raise ValueError(f"bias must have shape ({k},), got {tuple(bias.shape)}")
        logits = logits + bias
    means, _ = class_means(h, y, k)
    ncc = torch.cdist(h, means).argmin(1)
    return (logits.argmax(1) != ncc).to(h.dtype).mean()


@dataclass(frozen=True)
class NeuralCollapseMetrics:
    """All collapse metrics of one feature layer (floats; ``None`` without a classifier)."""

    nc1: float
    nc2_equinorm: float
    nc2_equiangular: float
    nc2_etf: float
    nc2_orthogonal: float
    nc2_etf_classifier: float | None
    nc3: float | None
    nc4: float | None


def neural_collapse_metrics(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> NeuralCollapseMetrics:
    """NC1-NC4 of ``features (N, d)`` with integer ``labels (N,)`` and an optional linear
    classifier ``weight (K, d)``, ``bias (K,)``.

    NC2 is reported for the globally centred class means as equinorm
    (std/mean of their norms), equiangularity (mean ``|cos + 1/(K-1)|`` over pairs, Papyan et
    al.), distance to a simplex ETF (:func:`etf_distance`) and, for the uncentred means,
    distance to an orthogonal frame (:func:`orthogonal_frame_distance`).
    """
    h, y, k = _check_features(features, labels, num_classes)
    means, glob = class_means(h, y, k)
    mc = means - glob
    norms = mc.norm(dim=1)
    u = mc / norms[:, None].clamp_min(torch.finfo(h.dtype).tiny)
    cos = u @ u.T
    off = ~torch.eye(k, dtype=torch.bool, device=h.device)
    equi = (cos[off] + 1.0 / (k - 1)).abs().mean()
    metrics = {
        "nc1": float(nc1(h, y, k)),
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangular": float(equi),
        "nc2_etf": float(etf_distance(mc)),
        "nc2_orthogonal": float(orthogonal_frame_distance(means)),
    }
    if weight is None:
        return NeuralCollapseMetrics(**metrics, nc2_etf_classifier=None, nc3=None, nc4=None)
    return NeuralCollapseMetrics(
        **metrics,
        nc2_etf_classifier=float(etf_distance(weight)),
        nc3=float(nc3(weight, mc)),
        nc4=float(nc4(h, y, weight, bias, k)),
    )


@dataclass(frozen=True)
class CollapseGeometry:
    """Predicted global minimiser of the bias-free deep linear UFM under MSE, per class ``k``.

    ``singular_values``: ``s_k`` of ``Z = W_M...W_1 H_bar D^{1/2}`` (diagonal, so the class
    means are orthogonal); ``feature_norms``: ``||h_k||`` of the free features;
    ``last_feature_norms``: ``||W_{M-1}...W_1 h_k||`` (the input of the last layer);
    ``classifier_norms``: row norms of ``W_M``; ``layer_norms[m]``: the k-th singular value of
    ``W_{m+1}``. All ``(K,)`` float64 tensors.
    """

    singular_values: torch.Tensor
    feature_norms: torch.Tensor
    last_feature_norms: torch.Tensor
    classifier_norms: torch.Tensor
    layer_norms: tuple[torch.Tensor, ...]


def imbalanced_collapse_geometry(
    class_sizes: Sequence[int], weight_decays: Sequence[float], feature_decay: float
) -> CollapseGeometry:
    """Class-mean and classifier lengths at the global minimum of the bias-free deep linear
    UFM with MSE (Dang et al. 2023, Sec. 5; closed form for one layer, Thm. 4.1).

    Args:
        class_sizes: ``n_k`` per class.
        weight_decays: ``lambda_{W_1} ... lambda_{W_M}`` (M >= 1 layers).
        feature_decay: ``lambda_H``.

    Each class solves ``min_{s >= 0} (s - sqrt(n_k))^2 / (2N) + c s^{2/(M+1)}``; a class whose
    minimiser is ``s = 0`` collapses to the origin (minority collapse). Balanced layers give
    ``lambda_m a_m^2 = (s prod sqrt(lambda))^{2/(M+1)}`` for every factor's singular value.
    """
    sizes = [int(n) for n in class_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"class_sizes must hold >= 2 positive counts, got {list(class_sizes)}")
    lams = [check_positive(float(v), "weight_decays") for v in weight_decays]
    if not lams:
        raise ValueError("weight_decays must name at least one layer")
    lam_h = check_positive(float(feature_decay), "feature_decay")
    n_tot = sum(sizes)
    m = len(lams)
    p = m + 1
    prod = lam_h * math.prod(lams)
    c = p / 2 * prod ** (1 / p)

    def objective(s: float, nk: int) -> float:
        return (s - math.sqrt(nk)) ** 2 / (2 * n_tot) + c * s ** (2 / p)

    s_vals = []
    for nk in sizes:
        if m == 1:
            s = max(math.sqrt(nk) - n_tot * math.sqrt(prod), 0.0)
        else:
            res = minimize_scalar(
                objective,
                bounds=(0.0, math.sqrt(nk)),
                args=(nk,),
                method="bounded",
                options={"xatol": 1e-12},
            )
            s = float(res.x) if objective(float(res.x), nk) < objective(0.0, nk) else 0.0
        s_vals.append(s)
    s_t = torch.tensor(s_vals, dtype=torch.float64)
    tau = (s_t * math.sqrt(prod)) ** (2 / p)
    a_h = (tau / lam_h).sqrt()
    a_w = tuple((tau / lam).sqrt() for lam in lams)
    n_t = torch.tensor(sizes, dtype=torch.float64)
    feat = a_h / n_t.sqrt()
    last = feat.clone()
    for a in a_w[:-1]:
        last = last * a
    return CollapseGeometry(s_t, feat, last, a_w[-1], a_w)
