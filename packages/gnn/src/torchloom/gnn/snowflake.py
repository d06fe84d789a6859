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
``LatentGraph`` / ``LatentGraphGNN`` / ``fit_latent_graph`` infer a graph for node
classification from latent snowflake (or Euclidean) distances, DGM-style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchloom.core import rng
from torchloom.gnn.training import fit_best_val

__all__ = [
    "EmbeddingFit",
    "LatentGraph",
    "LatentGraphGNN",
    "SnowflakeEmbedding",
    "SnowflakeMetric",
    "embedding_distortion",
    "fit_graph_embedding",
    "fit_latent_graph",
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
    return torch.as_tensor(dist, dtype=torch.float32, device=edge_index.device)


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


# --------------------------------------------------------------------------------------------
# Latent graph inference (DGM-style) with a snowflake or Euclidean latent metric
# --------------------------------------------------------------------------------------------
class LatentGraph(nn.Module):
    """Differentiable latent graph inference (discrete DGM, Kazi et al. 2022) on a trainable
    latent geometry, as used by neural snowflakes for node classification.

    Nodes are encoded by an MLP ``z = f(x)``; node ``i`` picks neighbour ``j ≠ i`` with
    probability ``p_ij = softmax_j(−t · ρ(z_i, z_j))`` (``p_ij ∝ exp(−t ρ_ij)`` as in DGM,
    normalised per node), ``ρ`` the snowflake metric of the latent distances
    (``metric="snowflake"``) or the Euclidean one, and a trainable temperature ``t > 0``. Each
    node draws ``k`` distinct neighbours: Gumbel-top-``k`` of ``log p_i·`` in training (a sample
    without replacement), the ``k`` most probable in eval mode. The sampling is not
    differentiable; :meth:`graph_loss` gives the encoder and the metric their REINFORCE-style
    signal, raising ``log p_ij`` of edges used by correctly classified nodes and lowering it
    for misclassified ones.

    Args:
        in_dim: feature size ``F``.
        latent_dim: latent size.
        k: sampled neighbours per node.
        metric: ``"snowflake"`` or ``"euclidean"``.
        hidden: MLP hidden width.
        temperature: initial ``t``.

    Shapes:
        ``forward``: ``x (N, F)`` → ``edge_index (2, N k)`` (edge ``j → i`` for each sampled
        ``j`` of target ``i``) and ``log_p (N, k)``.
    """

    def __init__(
        self,
        in_dim: int,
        latent_dim: int = 8,
        k: int = 5,
        metric: Literal["snowflake", "euclidean"] = "snowflake",
        hidden: int = 32,
        temperature: float = 4.0,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.k = k
        self.embedding = SnowflakeEmbedding(in_dim, latent_dim, hidden, layers=1, metric=metric)
        self.log_t = nn.Parameter(torch.tensor(float(np.log(temperature))))

    def log_probs(self, x: Tensor) -> Tensor:
        """Edge log-probabilities ``(N, N)``, normalised per row (``−inf`` on the diagonal)."""
        if x.dim() != 2:
            raise ValueError(f"x must have shape (N, F), got {tuple(x.shape)}")
        if x.shape[0] <= self.k:
            raise ValueError(f"need more than k={self.k} nodes, got {x.shape[0]}")
        logits = -self.log_t.exp() * self.embedding(x)
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        return torch.log_softmax(logits.masked_fill(eye, -float("inf")), dim=1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Sample the latent graph (see class docstring for shapes)."""
        logp = self.log_probs(x)
        scores = logp.detach()
        if self.training:
            u = rng.rand(scores.shape, generator=generator, dtype=scores.dtype, device=x.device)
            scores = scores - torch.log(-torch.log(u.clamp_min(1e-20)))
        idx = scores.topk(self.k, dim=1).indices
        n = x.shape[0]
        dst = torch.arange(n, device=x.device).repeat_interleave(self.k)
        edge_index = torch.stack([idx.reshape(-1), dst])
        return edge_index, logp.gather(1, idx)

    @staticmethod
    def graph_loss(log_p: Tensor, correct: Tensor, mask: Tensor, floor: float = -10.0) -> Tensor:
        """DGM graph loss ``−mean_i (c_i − c̄) Σ_j max(log p_ij, floor)`` over ``mask`` nodes,
        with ``c_i`` 1 when node ``i`` is classified correctly and ``c̄`` the mean (a
        variance-reducing baseline). The floor stops pushing down edges that are already
        improbable (without it one misclassified node can drive ``log p`` to ``−∞``).

        Args:
            log_p: sampled edges' log-probabilities ``(N, k)``.
            correct: boolean ``(N,)`` correct predictions.
            mask: boolean ``(N,)`` nodes with a label.
            floor: lower clamp of ``log p``.

        Returns:
            Scalar loss.
        """
        c = correct[mask].to(log_p.dtype)
        return -((c - c.mean()) * log_p[mask].clamp_min(floor).sum(1)).mean()


class LatentGraphGNN(nn.Module):
    """Node classifier on an inferred graph: :class:`LatentGraph` followed by two GCN layers
    that run on the sampled edges (optionally together with the given ones).

    Args:
        in_dim: feature size ``F``.
        n_classes: number of classes ``C``.
        k: sampled neighbours per node.
        metric: ``"snowflake"`` or ``"euclidean"`` latent geometry.
        latent_dim: latent size of the graph module.
        hidden: GCN hidden width.
        dropout: dropout on the GCN inputs.

    Shapes:
        ``x (N, F)`` (and optional ``edge_index (2, E)``) → logits ``(N, C)``, ``log_p (N, k)``.
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        k: int = 5,
        metric: Literal["snowflake", "euclidean"] = "snowflake",
        latent_dim: int = 8,
        hidden: int = 32,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.graph = LatentGraph(in_dim, latent_dim, k, metric)
        self.conv1 = GCNConv(in_dim, hidden)
        self.conv2 = GCNConv(hidden, n_classes)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Logits ``(N, C)`` and the sampled edges' log-probabilities ``(N, k)``."""
        latent, log_p = self.graph(x, generator)
        if edge_index is not None:
            latent = torch.cat([latent, edge_index], 1)
        h = F.dropout(x, self.dropout, self.training)
        h = torch.relu(self.conv1(h, latent))
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, latent), log_p


def fit_latent_graph(
    model: LatentGraphGNN,
    x: Tensor,
    y: Tensor,
    train_mask: Tensor,
    val_mask: Tensor | None = None,
    edge_index: Tensor | None = None,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    generator: torch.Generator | None = None,
) -> float:
    """Train ``model`` with ``CE + graph_loss`` on the training nodes; keeps the weights of the
    best validation accuracy (eval-mode, deterministic top-``k`` graph).

    Args:
        model: the :class:`LatentGraphGNN`.
        x: features ``(N, F)``.
        y: integer labels ``(N,)``.
        train_mask: boolean ``(N,)`` training nodes.
        val_mask: boolean ``(N,)`` model-selection nodes (default: training nodes).
        edge_index: optional given graph ``(2, E)`` used beside the latent one.
        epochs: Adam steps.
        lr: learning rate.
        weight_decay: weight decay.
        generator: randomness of the Gumbel sampling.

    Returns:
        The best validation accuracy.
    """
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got {y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    sel = train_mask if val_mask is None else val_mask

    def loss() -> Tensor:
        logits, log_p = model(x, edge_index, generator)
        correct = logits.argmax(1) == y
        ce = F.cross_entropy(logits[train_mask], y[train_mask])
        return ce + LatentGraph.graph_loss(log_p, correct, train_mask)

    def score() -> float:
        return float((model(x, edge_index)[0].argmax(1) == y)[sel].float().mean())

    return fit_best_val(model, loss, score, epochs, lr, weight_decay)
