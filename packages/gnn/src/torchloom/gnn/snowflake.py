"""Neural snowflakes (Borde & Kratsios, ICLR 2024): trainable latent geometries.

A *neural snowflake* is a trainable metric ``rho(x, y) = sigma(||f(x) - f(y)||)`` where ``f`` is
an MLP encoder and ``sigma`` is a non-negative combination of *metric-preserving* functions of the
Euclidean distance: concave, non-decreasing, zero at zero (so subadditive). Each unit below is one
of the paper's snowflake activations,

* ``d ** alpha`` with a trainable ``0 < alpha <= 1`` (the snowflake of the metric),
* ``log(1 + s d)`` and ``1 - exp(-s d)`` with a trainable scale ``s > 0``,
* the identity ``d``,

and the units are combined with softplus-parametrised (hence non-negative) weights. A non-negative
combination of metric-preserving functions is metric preserving, so ``rho`` is a (pseudo)metric
by construction for every parameter value, trained or not.

``fit_graph_embedding`` fits encoder + metric to a graph's shortest-path distances;
``graph_distances`` computes those (scipy's ``shortest_path``) for a PyG ``edge_index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "EmbeddingFit",
    "SnowflakeEmbedding",
    "SnowflakeMetric",
    "embedding_distortion",
    "fit_graph_embedding",
    "graph_distances",
]

_EPS = 1e-6


def _inv_softplus(x: float) -> float:
    return float(np.log(np.expm1(x)))


class SnowflakeMetric(nn.Module):
    """Trainable metric-preserving transform ``sigma`` of a distance tensor (elementwise).

    ``sigma(d) = w_0 d + sum_k a_k ((d + eps)^alpha_k - eps^alpha_k)
    + sum_k b_k log(1 + s_k d) + sum_k c_k (1 - exp(-t_k d))`` with all of ``w, a, b, c, s, t``
    softplus-positive and ``alpha_k = sigmoid(.)`` in ``(0, 1)``. Every term is concave,
    non-decreasing and zero at ``d = 0``, so ``sigma`` composed with any metric is a metric.
    The ``eps`` shift keeps the power's gradient finite at ``d = 0`` and preserves concavity.

    Args:
        n_units: number of units of each of the three snowflake activation families.
        eps: shift in the power units (must be > 0).
    """

    def __init__(self, n_units: int = 4, eps: float = 1e-3) -> None:
        super().__init__()
        if n_units < 1:
            raise ValueError(f"n_units must be >= 1, got {n_units}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps
        k = n_units
        self.raw_linear = nn.Parameter(torch.tensor(_inv_softplus(0.5)))
        self.raw_power_w = nn.Parameter(torch.full((k,), _inv_softplus(0.5 / k)))
        self.raw_alpha = nn.Parameter(torch.linspace(-2.0, 2.0, k))
        self.raw_log_w = nn.Parameter(torch.full((k,), _inv_softplus(0.5 / k)))
        self.raw_log_s = nn.Parameter(torch.linspace(-2.0, 2.0, k))
        self.raw_exp_w = nn.Parameter(torch.full((k,), _inv_softplus(0.5 / k)))
        self.raw_exp_s = nn.Parameter(torch.linspace(-2.0, 2.0, k))

    @property
    def alpha(self) -> Tensor:
        """Snowflake exponents in ``(0, 1)``."""
        return torch.sigmoid(self.raw_alpha)

    def forward(self, d: Tensor) -> Tensor:
        if d.is_floating_point() is False:
            raise TypeError("distances must be a floating tensor")
        d = d.clamp_min(0).unsqueeze(-1)
        alpha = self.alpha
        power = (d + self.eps) ** alpha - self.eps**alpha
        logs = torch.log1p(F.softplus(self.raw_log_s) * d)
        exps = -torch.expm1(-F.softplus(self.raw_exp_s) * d)
        out = F.softplus(self.raw_linear) * d.squeeze(-1)
        out = out + (F.softplus(self.raw_power_w) * power).sum(-1)
        out = out + (F.softplus(self.raw_log_w) * logs).sum(-1)
        return out + (F.softplus(self.raw_exp_w) * exps).sum(-1)


def _pairwise_norm(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||`` with a zero (not NaN) gradient where the points coincide."""
    sq = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)
    pos = sq > 0
    safe = torch.where(pos, sq, torch.ones_like(sq))
    return torch.where(pos, safe.sqrt(), torch.zeros_like(sq))


class SnowflakeEmbedding(nn.Module):
    """MLP encoder ``f`` followed by a latent geometry on ``R^dim``.

    ``metric="snowflake"`` uses ``SnowflakeMetric(||f(x) - f(y)||)``; ``metric="euclidean"``
    uses ``c ||f(x) - f(y)||`` with a trainable scale ``c > 0`` (the baseline).

    Args:
        in_dim: input feature size.
        dim: latent (embedding) dimension.
        hidden: MLP hidden width.
        layers: number of hidden layers of the MLP.
        metric: ``"snowflake"`` or ``"euclidean"``.
        n_units: snowflake units per activation family.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        hidden: int = 64,
        layers: int = 2,
        metric: Literal["snowflake", "euclidean"] = "snowflake",
        n_units: int = 4,
    ) -> None:
        super().__init__()
        if metric not in ("snowflake", "euclidean"):
            raise ValueError(f"metric must be 'snowflake' or 'euclidean', got {metric!r}")
        if min(in_dim, dim, hidden) < 1 or layers < 0:
            raise ValueError("in_dim, dim, hidden must be >= 1 and layers >= 0")
        mods: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        mods.append(nn.Linear(width, dim))
        self.encoder = nn.Sequential(*mods)
        self.metric = metric
        self.snowflake = SnowflakeMetric(n_units) if metric == "snowflake" else None
        self.raw_scale = nn.Parameter(torch.tensor(_inv_softplus(1.0)))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def transform(self, d: Tensor) -> Tensor:
        """Apply the latent geometry to Euclidean latent distances ``d``."""
        if self.snowflake is not None:
            return self.snowflake(d)
        return F.softplus(self.raw_scale) * d

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """Row-wise distance between matching rows of ``x`` and ``y``."""
        fx, fy = self.encode(x), self.encode(y)
        return self.transform(_pairwise_norm(fx.unsqueeze(-2), fy.unsqueeze(-2))[..., 0, 0])

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Matrix of distances between all rows of ``x`` and of ``y`` (default ``x``)."""
        fx = self.encode(x)
        fy = fx if y is None else self.encode(y)
        return self.transform(_pairwise_norm(fx, fy))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.pairwise(x, y)


def graph_distances(edge_index: Tensor, num_nodes: int | None = None) -> Tensor:
    """All-pairs shortest-path (hop) distances of an undirected graph given as ``edge_index``.

    Raises ``ValueError`` if the graph is disconnected (infinite distances).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    n = int(edge_index.max()) + 1 if num_nodes is None else num_nodes
    ei = edge_index.cpu().numpy()
    adj = coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n)).tocsr()
    dist = shortest_path(adj, directed=False, unweighted=True)
    if not np.isfinite(dist).all():
        raise ValueError("graph is disconnected: some shortest-path distances are infinite")
    return torch.as_tensor(dist, dtype=torch.float32)


def embedding_distortion(learned: Tensor, true: Tensor) -> dict[str, float]:
    """Distortion of ``learned`` vs ``true`` distance matrices over off-diagonal pairs.

    Returns ``avg`` (mean ``|learned/true - 1|``), ``avg_scaled`` (the same after the best
    single rescaling, the median ratio), and ``ratio`` (max ratio / min ratio, the worst-case
    multiplicative distortion; 1 is isometric up to scale).
    """
    if learned.shape != true.shape:
        raise ValueError(f"shape mismatch: {tuple(learned.shape)} vs {tuple(true.shape)}")
    mask = ~torch.eye(true.shape[0], dtype=torch.bool, device=true.device)
    r = (learned.detach()[mask] / true[mask]).double()
    med = r.median()
    return {
        "avg": float((r - 1).abs().mean()),
        "avg_scaled": float((r / med - 1).abs().mean()),
        "ratio": float(r.max() / r.min().clamp_min(1e-12)),
    }


@dataclass
class EmbeddingFit:
    """Result of ``fit_graph_embedding``: the model, its loss curve and final distortion."""

    model: SnowflakeEmbedding
    losses: list[float]
    distortion: dict[str, float]


def fit_graph_embedding(
    dist: Tensor,
    dim: int = 2,
    metric: Literal["snowflake", "euclidean"] = "snowflake",
    steps: int = 500,
    lr: float = 1e-2,
    hidden: int = 64,
    features: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> EmbeddingFit:
    """Fit encoder + latent geometry so that learned distances match ``dist`` (n x n).

    Nodes are encoded from ``features`` (default one-hot identity). The loss is the mean squared
    log-ratio ``log(learned / true)^2`` over off-diagonal pairs, i.e. multiplicative distortion.
    """
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be square, got {tuple(dist.shape)}")
    n = dist.shape[0]
    x = torch.eye(n) if features is None else features
    if x.shape[0] != n:
        raise ValueError("features must have one row per node")
    if generator is not None:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    model = SnowflakeEmbedding(x.shape[1], dim, hidden=hidden, metric=metric)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    mask = ~torch.eye(n, dtype=torch.bool)
    target = dist[mask].float()
    losses: list[float] = []
    for _ in range(steps):
        opt.zero_grad()
        learned = model(x)[mask]
        loss = (torch.log(learned + 1e-6) - torch.log(target)).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        d = embedding_distortion(model(x), dist.float())
    return EmbeddingFit(model=model, losses=losses, distortion=d)
