"""Convergent learning: do nets trained from different seeds learn the same units?

Li, Yosinski, Clune, Lipson & Hopcroft (ICLR 2016) compare the units of one layer of two
networks through the correlations of their activations over a data set (a convolutional
channel's activation at every spatial position counts as one sample):

- one-to-one: :func:`bipartite_matching` pairs every unit of net 1 with a distinct unit of
  net 2 maximising the summed correlation (Hungarian algorithm, SciPy's
  ``linear_sum_assignment``); :func:`semi_matching` lets each unit take its best partner;
- one-to-many: :func:`sparse_prediction` predicts each unit of net 2 from all units of net 1 by
  an L1-penalised linear map (the paper's sparse prediction layer; solved here by FISTA);
- many-to-many: :func:`spectral_alignment` clusters the units of both nets together by spectral
  clustering of the absolute correlation graph, so that groups spanning a shared subspace land
  in one cluster.

:func:`convergence_summary` condenses these into the paper's observations: a few units have
near-perfect matches while others have none, and subspaces match better than single units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchloom.core import rng

__all__ = [
    "ConvergenceSummary",
    "SpectralAlignment",
    "bipartite_matching",
    "convergence_summary",
    "correlation_matrices",
    "lasso_fista",
    "layer_activations",
    "semi_matching",
    "sparse_prediction",
    "spectral_alignment",
    "subspace_r2",
]


def layer_activations(
    model: nn.Module, layer: nn.Module, x: Tensor, batch_size: int = 512
) -> Tensor:
    """Activations of ``layer`` (captured by a forward hook) as a (samples, units) matrix.

    Args:
        model: the network; called on batches of ``x`` under ``no_grad``.
        layer: a submodule of ``model`` whose output is recorded.
        x: (N, ...) inputs.
        batch_size: examples per forward pass.

    Returns:
        (N, C) for an (N, C) output; (N * H * W, C) for an (N, C, H, W) output (every spatial
        position is a sample, as in the paper), likewise for any (N, C, *) output.
    """
    outs: list[Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        o = (out[0] if isinstance(out, tuple) else out).detach()
        if o.ndim > 2:
            o = o.flatten(2).transpose(1, 2).reshape(-1, o.shape[1])
        outs.append(o)

    h = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                model(x[i : i + batch_size])
    finally:
        h.remove()
    if not outs:
        raise ValueError("layer did not run during model(x); is it a submodule of model?")
    return torch.cat(outs)


def _standardize(a: Tensor) -> Tensor:
    a = a.double()
    a = a - a.mean(0, keepdim=True)
    sd = a.pow(2).mean(0, keepdim=True).sqrt()
    live = sd > 1e-12
    return torch.where(live, a / torch.where(live, sd, 1.0), 0.0)


def correlation_matrices(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pearson correlations within and between the units of two layers.

    Args:
        a: (S, C1) activations of net 1 (S samples).
        b: (S, C2) activations of net 2 on the same samples.

    Returns:
        ``(corr_aa, corr_bb, corr_ab)`` of shapes (C1, C1), (C2, C2), (C1, C2), float64; a
        constant (dead) unit has correlation 0 with everything, itself included.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must be (S, C1) and (S, C2) with the same S, got {tuple(a.shape)}, "
            f"{tuple(b.shape)}"
        )
    if a.shape[0] < 2:
        raise ValueError("need at least 2 samples")
    za, zb = _standardize(a), _standardize(b)
    s = a.shape[0]
    return za.T @ za / s, zb.T @ zb / s, za.T @ zb / s


def bipartite_matching(corr_ab: Tensor) -> tuple[Tensor, Tensor]:
    """One-to-one matching of units maximising the total correlation (Hungarian algorithm).

    Args:
        corr_ab: (C1, C2) correlations between net 1's and net 2's units.

    Returns:
        ``(partner, value)``: (min(C1, C2),) tensors. With C1 <= C2, ``partner[i]`` is the unit
        of net 2 matched to unit i of net 1 and ``value[i]`` their correlation; with C1 > C2
        the roles are swapped (one entry per unit of net 2, giving its partner in net 1).
    """
    from scipy.optimize import linear_sum_assignment

    if corr_ab.ndim != 2:
        raise ValueError(f"corr_ab must be (C1, C2), got {tuple(corr_ab.shape)}")
    c = corr_ab.detach().cpu().double()
    swap = c.shape[0] > c.shape[1]
    if swap:
        c = c.T
    rows, cols = linear_sum_assignment(c.numpy(), maximize=True)
    partner = torch.as_tensor(cols, dtype=torch.long)
    value = c[torch.as_tensor(rows), partner]
    return partner, value


def semi_matching(corr_ab: Tensor) -> tuple[Tensor, Tensor]:
    """Each unit of net 1 takes its most correlated unit of net 2 (several may share one).

    Args:
        corr_ab: (C1, C2) correlations.

    Returns:
        ``(partner, value)``, both (C1,): the best partner and its correlation. ``value`` is at
        least the bipartite matching's correlation for every unit.
    """
    if corr_ab.ndim != 2:
        raise ValueError(f"corr_ab must be (C1, C2), got {tuple(corr_ab.shape)}")
    value, partner = corr_ab.max(dim=1)
    return partner, value


def lasso_fista(x: Tensor, y: Tensor, alpha: float, iters: int = 500, tol: float = 1e-10) -> Tensor:
    """L1-penalised least squares for many targets at once, by FISTA.

    Minimises ``||y - x w||² / (2 S) + alpha * ||w||_1`` column by column (no intercept; centre
    the data first), the objective of scikit-learn's ``Lasso``.

    Args:
        x: (S, P) predictors.
        y: (S, K) targets (or (S,)).
        alpha: L1 weight >= 0.
        iters: maximum iterations.
        tol: stop when the largest coefficient change falls below this.

    Returns:
        (P, K) coefficients (or (P,) for a 1-D ``y``).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    squeeze = y.ndim == 1
    if squeeze:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x (S, P) and y (S, K) need the same S, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    x, y = x.double(), y.double()
    s = x.shape[0]
    gram = x.T @ x / s
    xty = x.T @ y / s
    lip = float(torch.linalg.eigvalsh(gram).max().clamp_min(1e-12))
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, device=x.device)
    z, t = w.clone(), 1.0
    for _ in range(iters):
        grad = gram @ z - xty
        u = z - grad / lip
        w_new = u.sign() * (u.abs() - alpha / lip).clamp_min(0.0)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = w_new + (t - 1) / t_new * (w_new - w)
        done = float((w_new - w).abs().max()) < tol
        w, t = w_new, t_new
        if done:
            break
    return w[:, 0] if squeeze else w


def sparse_prediction(
    a: Tensor,
    b: Tensor,
    alpha: float = 0.05,
    a_eval: Tensor | None = None,
    b_eval: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One-to-many mapping: predict each unit of net 2 from net 1's units with an L1 penalty.

    Both layers are standardised (zero mean, unit variance per unit) with the fitting samples'
    statistics, as in the paper's sparse prediction layer.

    Args:
        a: (S, C1) activations of net 1 used to fit the map.
        b: (S, C2) activations of net 2 on the same samples.
        alpha: L1 weight (larger: fewer predictors per unit).
        a_eval: optional (S', C1) held-out activations to score the map on.
        b_eval: (S', C2) held-out activations of net 2 (with ``a_eval``).

    Returns:
        ``(weights, r2)``: (C1, C2) sparse map and (C2,) coefficient of determination of each
        predicted unit (on the held-out samples if given). Dead units of net 2 get r2 = 0.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError("a and b must be (S, C1) and (S, C2) with the same S")
    ma, sa = a.double().mean(0), a.double().std(0, unbiased=False)
    mb, sb = b.double().mean(0), b.double().std(0, unbiased=False)

    def z(v: Tensor, m: Tensor, sd: Tensor) -> Tensor:
        live = sd > 1e-12
        return torch.where(live, (v.double() - m) / torch.where(live, sd, 1.0), 0.0)

    w = lasso_fista(z(a, ma, sa), z(b, mb, sb), alpha)
    if (a_eval is None) != (b_eval is None):
        raise ValueError("give both a_eval and b_eval, or neither")
    ea, eb = (a, b) if a_eval is None or b_eval is None else (a_eval, b_eval)
    za, zb = z(ea, ma, sa), z(eb, mb, sb)
    return w, _r2(zb, za @ w)


def _r2(target: Tensor, pred: Tensor) -> Tensor:
    tc = target - target.mean(0, keepdim=True)
    ss = tc.pow(2).sum(0)
    live = ss > 1e-12 * target.shape[0]
    r2 = 1 - (target - pred).pow(2).sum(0) / torch.where(live, ss, torch.ones_like(ss))
    return torch.where(live, r2, torch.zeros_like(r2))


def subspace_r2(
    a: Tensor,
    b: Tensor,
    groups_a: list[Tensor],
    groups_b: list[Tensor],
    a_eval: Tensor | None = None,
    b_eval: Tensor | None = None,
    ridge: float = 1e-6,
) -> Tensor:
    """How well each unit of net 2 is predicted linearly from the net-1 units of its group.

    Args:
        a: (S, C1) activations of net 1 (fit).
        b: (S, C2) activations of net 2 (fit).
        groups_a: index tensors into net 1's units, one per group.
        groups_b: index tensors into net 2's units, same number of groups.
        a_eval: optional (S', C1) held-out activations to score on.
        b_eval: optional (S', C2) held-out activations of net 2.
        ridge: small ridge term for the least-squares fit.

    Returns:
        (C2,) R² of each unit of net 2 (0 for units in a group without net-1 units).
    """
    if len(groups_a) != len(groups_b):
        raise ValueError("groups_a and groups_b need the same number of groups")
    ea, eb = (a, b) if a_eval is None or b_eval is None else (a_eval, b_eval)
    ma, sa = a.double().mean(0), a.double().std(0, unbiased=False)
    live = sa > 1e-12
    sa = torch.where(live, sa, torch.ones_like(sa))
    mb = b.double().mean(0)
    za = torch.where(live, (a.double() - ma) / sa, 0.0)
    ze = torch.where(live, (ea.double() - ma) / sa, 0.0)
    cb, ce = b.double() - mb, eb.double() - mb
    out = torch.zeros(b.shape[1], dtype=torch.float64, device=b.device)
    for ga, gb in zip(groups_a, groups_b, strict=True):
        if gb.numel() == 0:
            continue
        if ga.numel() == 0:
            out[gb] = 0.0
            continue
        xa = za[:, ga]
        w = torch.linalg.solve(
            xa.T @ xa
            + ridge * xa.shape[0] * torch.eye(ga.numel(), dtype=torch.float64, device=xa.device),
            xa.T @ cb[:, gb],
        )
        out[gb] = _r2(ce[:, gb], ze[:, ga] @ w)
    return out


@dataclass
class SpectralAlignment:
    """Result of :func:`spectral_alignment`.

    Attributes:
        labels_a: (C1,) cluster of each unit of net 1.
        labels_b: (C2,) cluster of each unit of net 2.
        groups_a: per cluster, the indices of net 1's units.
        groups_b: per cluster, the indices of net 2's units.
    """

    labels_a: Tensor
    labels_b: Tensor
    groups_a: list[Tensor]
    groups_b: list[Tensor]


def _kmeans(v: Tensor, k: int, generator: torch.Generator | None, restarts: int = 10) -> Tensor:
    best, best_cost = torch.zeros(v.shape[0], dtype=torch.long), float("inf")
    for _ in range(restarts):
        # k-means++ seeding.
        idx = [int(rng.randint(0, v.shape[0], (1,), generator=generator))]
        for _ in range(1, k):
            d = torch.cdist(v, v[idx]).min(1).values.pow(2)
            p = d / d.sum() if float(d.sum()) > 0 else torch.full_like(d, 1 / len(d))
            idx.append(int(rng.multinomial(p, 1, generator=generator)))
        cent = v[idx].clone()
        for _ in range(100):
            lab = torch.cdist(v, cent).argmin(1)
            new = torch.stack(
                [v[lab == j].mean(0) if bool((lab == j).any()) else cent[j] for j in range(k)]
            )
            if torch.allclose(new, cent):
                break
            cent = new
        cost = float(torch.cdist(v, cent).min(1).values.pow(2).sum())
        if cost < best_cost:
            best, best_cost = lab, cost
    return best


def spectral_alignment(
    corr_aa: Tensor,
    corr_bb: Tensor,
    corr_ab: Tensor,
    n_clusters: int,
    generator: torch.Generator | None = None,
) -> SpectralAlignment:
    """Many-to-many alignment: spectral clustering of both nets' units together.

    The affinity of two units is the absolute correlation of their activations (within net 1,
    within net 2 and across); clusters are found by the normalised spectral embedding of Ng,
    Jordan & Weiss (top eigenvectors of ``D^-1/2 A D^-1/2``, rows normalised, k-means).

    Args:
        corr_aa: (C1, C1) correlations within net 1.
        corr_bb: (C2, C2) correlations within net 2.
        corr_ab: (C1, C2) correlations across.
        n_clusters: number of clusters (1 <= n_clusters <= C1 + C2).
        generator: torch generator for k-means seeding.

    Returns:
        A :class:`SpectralAlignment` with each unit's cluster and the per-cluster groups.
    """
    c1, c2 = corr_ab.shape
    if corr_aa.shape != (c1, c1) or corr_bb.shape != (c2, c2):
        raise ValueError("corr_aa, corr_bb, corr_ab shapes do not agree")
    if not 1 <= n_clusters <= c1 + c2:
        raise ValueError(f"n_clusters must be in [1, {c1 + c2}], got {n_clusters}")
    aff = (
        torch.cat([torch.cat([corr_aa, corr_ab], 1), torch.cat([corr_ab.T, corr_bb], 1)], 0)
        .double()
        .abs()
    )
    aff.fill_diagonal_(0.0)
    aff = aff + 1e-9
    d = aff.sum(1).rsqrt()
    lap = d[:, None] * aff * d[None, :]
    _, vecs = torch.linalg.eigh(lap)
    emb = vecs[:, -n_clusters:]
    emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
    labels = _kmeans(emb.cpu(), n_clusters, generator)
    la, lb = labels[:c1], labels[c1:]
    groups_a = [torch.nonzero(la == k).flatten() for k in range(n_clusters)]
    groups_b = [torch.nonzero(lb == k).flatten() for k in range(n_clusters)]
    return SpectralAlignment(la, lb, groups_a, groups_b)


@dataclass
class ConvergenceSummary:
    """What :func:`convergence_summary` reports for one pair of layers.

    Attributes:
        matched_corr: (C1,) bipartite-matched correlation of each unit of net 1 (C1 <= C2).
        semi_corr: (C1,) best-partner correlation of each unit of net 1.
        within_corr: (C1,) each unit's highest correlation with another unit of its own net.
        frac_reliable: fraction of net-1 units whose matched correlation is >= ``threshold``.
        one_to_one_r2: mean held-out R² of net 2's units predicted from their matched unit.
        one_to_many_r2: mean held-out R² of the sparse (L1) prediction.
        many_to_many_r2: mean held-out R² of prediction from the unit's spectral cluster.
        full_r2: mean held-out R² of prediction from all of net 1's units (the ceiling).
    """

    matched_corr: Tensor
    semi_corr: Tensor
    within_corr: Tensor
    frac_reliable: float
    one_to_one_r2: float
    one_to_many_r2: float
    many_to_many_r2: float
    full_r2: float


def convergence_summary(
    a: Tensor,
    b: Tensor,
    threshold: float = 0.5,
    n_clusters: int | None = None,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
) -> ConvergenceSummary:
    """Compare one layer of two nets: one-to-one, one-to-many and many-to-many alignments.

    The samples are split in halves: correlations, the matching, the sparse map and the clusters
    are fitted on the first half, and every R² is measured on the second.

    Args:
        a: (S, C) activations of net 1.
        b: (S, C) activations of net 2 on the same samples.
        threshold: matched correlation above which a unit counts as reliably learned.
        n_clusters: number of spectral clusters (default C // 4, at least 2).
        alpha: L1 weight of the sparse prediction.
        generator: torch generator for the split and k-means.

    Returns:
        A :class:`ConvergenceSummary`.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both be (S, C), got {tuple(a.shape)}, {tuple(b.shape)}")
    s, c = a.shape
    if s < 4:
        raise ValueError("need at least 4 samples")
    perm = rng.randperm(s, generator=generator, device=a.device)
    fit, ev = perm[: s // 2], perm[s // 2 :]
    af, bf, ae, be = a[fit], b[fit], a[ev], b[ev]
    caa, cbb, cab = correlation_matrices(af, bf)
    partner, matched = bipartite_matching(cab)
    _, semi = semi_matching(cab)
    within = (caa - 2 * torch.eye(c, dtype=caa.dtype, device=caa.device)).max(1).values
    # One-to-one: unit partner[i] of net 2 predicted from unit i of net 1 alone.
    idx = torch.arange(c)
    one = subspace_r2(
        af, bf, [torch.tensor([int(i)]) for i in idx], [partner[i : i + 1] for i in idx], ae, be
    )
    _, r2_sparse = sparse_prediction(af, bf, alpha, ae, be)
    k = n_clusters if n_clusters is not None else max(2, c // 4)
    sp = spectral_alignment(caa, cbb, cab, k, generator)
    many = subspace_r2(af, bf, sp.groups_a, sp.groups_b, ae, be)
    full = subspace_r2(af, bf, [idx], [idx], ae, be)
    return ConvergenceSummary(
        matched_corr=matched,
        semi_corr=semi,
        within_corr=within,
        frac_reliable=float((matched >= threshold).double().mean()),
        one_to_one_r2=float(one.mean()),
        one_to_many_r2=float(r2_sparse.mean()),
        many_to_many_r2=float(many.mean()),
        full_r2=float(full.mean()),
    )
