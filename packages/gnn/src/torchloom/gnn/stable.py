"""STABLE: unsupervised structure refinement for robust GNNs (Li et al., KDD 2022), and the
structure attacks used to evaluate it.

"Reliable Representations Make A Stronger Defender" refines a possibly poisoned graph in four
steps (following the paper and the authors' code, github.com/likuanppd/STABLE):

1. **Pre-processing** — :func:`jaccard_prune` removes edges whose endpoints' binary features have
   Jaccard similarity below ``jaccard_threshold`` (the easily detected adversarial edges).
2. **Contrastive representations** — :class:`STABLEEncoder` (a one-layer GCN with self-loop
   weight ``β = 2`` and PReLU) is trained DGI-style: node embeddings of the pre-processed
   *attacked* graph are discriminated (bilinear critic) against the sigmoid-mean summaries of
   two augmented views, each *recovering* a random share of the pruned edges
   (:func:`recover_edges`), with feature-shuffled corruptions as negatives; early stopping on
   the loss. The embeddings stay insensitive to a few wrong edges.
3. **Refinement** — :func:`refine_graph` drops edges of the attacked graph whose embedding
   cosine similarity is at most ``t1`` and gives every node its ``k`` most similar
   well-connected nodes as extra ("helper") neighbours.
4. **Advanced GCN** — :class:`AdvancedGCNConv` propagates with
   ``Â = rownorm(D^α (A + I) D^α)`` (``D`` the degrees of ``A + I``): the authors tune ``α``
   with the perturbation rate (negative when clean, positive at 15–20%). Row normalisation
   cancels the left ``D^α``, so ``Â_ij = a_ij d_j^α / Σ_k a_ik d_k^α``. As in the authors'
   code, the GCN reads the contrastive representations as node features and runs on the
   refined graph.

Attacks (all return a perturbed undirected ``edge_index``): :func:`random_attack` (add, remove
or flip random pairs), :func:`dice_attack` (delete edges inside classes, insert edges between
classes) and :func:`pgd_attack`, our gradient-based structure attack: projected gradient ascent
(Xu et al., IJCAI 2019) on a relaxed flip vector ``s ∈ [0, 1]^{N(N-1)/2}`` with
``A' = A + (1 − 2A) ∘ S``. With ``inner_steps > 0`` the attacked loss is the one of a linearised
GCN surrogate (``softmax(Â'² X W)``, Metattack's surrogate) *re-trained on A'* by unrolled
gradient descent, i.e. a meta-gradient (poisoning) attack in the spirit of Metattack
(Zügner & Günnemann, ICLR 2019) optimised by PGD; ``inner_steps=0`` attacks a fixed surrogate
trained on the clean graph (evasion). Labels of unlabelled nodes are the surrogate's own
predictions (Meta-Self). :mod:`torchloom.gnn.peers` runs DeepRobust's DICE and Metattack on the
same graphs (the tests check that our DICE perturbs the same statistics as DeepRobust's).

Attacks and the embedding similarity use dense ``(N, N)`` matrices: meant for graphs of up to
a few thousand nodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv, MessagePassing
from torch_geometric.utils import coalesce, to_edge_index, to_undirected

from torchloom.core import rng
from torchloom.core.checks import check_int, check_probability
from torchloom.gnn.forward import check_graph
from torchloom.gnn.training import train_node_classifier

__all__ = [
    "STABLE",
    "AdvancedGCN",
    "AdvancedGCNConv",
    "STABLEEncoder",
    "advanced_gcn_norm",
    "contrastive_embeddings",
    "dice_attack",
    "jaccard_prune",
    "jaccard_similarity",
    "pgd_attack",
    "random_attack",
    "recover_edges",
    "refine_graph",
]


# --------------------------------------------------------------------------------------------
# edge bookkeeping (undirected graphs stored with both directions)
# --------------------------------------------------------------------------------------------
def _check_edge_index(edge_index: Tensor, num_nodes: int, name: str = "edge_index") -> None:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name} must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"{name} must be int64, got {edge_index.dtype}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(
            f"{name} holds node ids outside [0, {num_nodes}): "
            f"min {int(edge_index.min())}, max {int(edge_index.max())}"
        )


def _upper(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Unique undirected pairs ``(2, M)`` with ``row < col`` (self-loops dropped)."""
    r, c = edge_index
    lo, hi = torch.minimum(r, c), torch.maximum(r, c)
    keep = lo != hi
    pairs = torch.stack([lo[keep], hi[keep]])
    return coalesce(pairs, num_nodes=num_nodes)


def _sym(pairs: Tensor, num_nodes: int) -> Tensor:
    return coalesce(to_undirected(pairs, num_nodes=num_nodes), num_nodes=num_nodes)


def _dense(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    a = torch.zeros(num_nodes, num_nodes, dtype=dtype, device=edge_index.device)
    a[edge_index[0], edge_index[1]] = 1.0
    return a


def _from_dense(a: Tensor) -> Tensor:
    a = torch.triu(a, diagonal=1)
    pairs = torch.nonzero(a > 0.5).T.contiguous()
    return _sym(pairs, a.shape[0])


# --------------------------------------------------------------------------------------------
# 1. Jaccard pre-processing and recovery augmentation
# --------------------------------------------------------------------------------------------
def jaccard_similarity(x: Tensor, edge_index: Tensor) -> Tensor:
    """Jaccard similarity ``|x_i ∧ x_j| / |x_i ∨ x_j|`` of the binarised (non-zero) features of
    each edge's endpoints.

    Args:
        x: node features ``(N, F)``; entries are read as present when non-zero.
        edge_index: edges ``(2, E)``.

    Returns:
        Similarities ``(E,)`` in ``[0, 1]`` (0 where both feature sets are empty).
    """
    check_graph(x, edge_index)
    b = (x != 0).to(torch.float32)
    xi, xj = b[edge_index[0]], b[edge_index[1]]
    inter = (xi * xj).sum(1)
    union = xi.sum(1) + xj.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def jaccard_prune(x: Tensor, edge_index: Tensor, threshold: float = 0.03) -> tuple[Tensor, Tensor]:
    """Split an undirected graph's edges by the Jaccard similarity of their endpoints.

    Args:
        x: node features ``(N, F)``.
        edge_index: undirected edges ``(2, E)`` (both directions, as PyG stores them).
        threshold: edges with similarity strictly below it are removed.

    Returns:
        ``(kept, removed)``: two undirected ``edge_index`` tensors (both directions, coalesced)
        that partition the input's edges (self-loops dropped).
    """
    check_probability(threshold, "threshold")
    n = x.shape[0]
    pairs = _upper(edge_index, n)
    check_graph(x, pairs)
    sim = jaccard_similarity(x, pairs)
    keep = sim >= threshold
    return _sym(pairs[:, keep], n), _sym(pairs[:, ~keep], n)


def recover_edges(
    kept: Tensor,
    removed: Tensor,
    ratio: float,
    num_nodes: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """STABLE's augmentation: the pruned graph plus a random share ``ratio`` of the removed
    undirected edges.

    Args:
        kept: undirected edges kept by pre-processing ``(2, E_k)``.
        removed: undirected edges removed by it ``(2, E_r)``.
        ratio: share of removed edges restored (each one independently).
        num_nodes: number of nodes ``N``.
        generator: source of randomness.

    Returns:
        Undirected ``edge_index`` ``(2, E')`` with ``kept ⊆ result ⊆ kept ∪ removed``.
    """
    check_probability(ratio, "ratio")
    pairs = _upper(removed, num_nodes)
    pick = rng.rand((pairs.shape[1],), generator=generator, device=pairs.device) < ratio
    return _sym(torch.cat([_upper(kept, num_nodes), pairs[:, pick]], 1), num_nodes)


# --------------------------------------------------------------------------------------------
# 2. Contrastive (DGI-style) representations
# --------------------------------------------------------------------------------------------
def _gcn_weights(
    edge_index: Tensor, num_nodes: int, self_loop: float, dtype: torch.dtype
) -> Tensor:
    """Edge weights of ``D^{-1/2} (A + βI) D^{-1/2}`` for ``edge_index`` with its self-loops
    already appended (the last ``num_nodes`` columns), ``β = self_loop``."""
    w = torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    w[-num_nodes:] = self_loop
    deg = torch.zeros(num_nodes, dtype=dtype, device=w.device).index_add_(0, edge_index[1], w)
    dis = deg.pow(-0.5)
    return dis[edge_index[0]] * w * dis[edge_index[1]]


class STABLEEncoder(nn.Module):
    """One-layer GCN encoder ``PReLU(Â X W + b)`` with a heavier self-loop,
    ``Â = D^{-1/2} (A + βI) D^{-1/2}``, and a bilinear DGI critic ``D(h, s) = hᵀ W s + b``.

    Args:
        in_channels: feature size ``F``.
        hidden: embedding size ``d``.
        self_loop: self-loop weight ``β`` (the authors fix ``β = 2``).

    Shapes:
        ``forward``: ``x (N, F)``, ``edge_index (2, E)`` → ``(N, d)``.
    """

    def __init__(self, in_channels: int, hidden: int = 512, self_loop: float = 2.0) -> None:
        super().__init__()
        if self_loop <= 0:
            raise ValueError(f"self_loop must be > 0, got {self_loop}")
        self.self_loop = float(self_loop)
        self.conv = GCNConv(in_channels, hidden, normalize=False)
        nn.init.xavier_uniform_(self.conv.lin.weight)
        self.act = nn.PReLU()
        self.critic_weight = nn.Parameter(torch.empty(hidden, hidden))
        self.critic_bias = nn.Parameter(torch.zeros(()))
        nn.init.xavier_uniform_(self.critic_weight)

    def forward(self, x: Tensor, edge_index: Tensor, self_loop: float | None = None) -> Tensor:
        """Node embeddings ``(N, d)`` (``self_loop`` overrides ``β`` for this call)."""
        n = x.shape[0]
        check_graph(x, edge_index)
        keep = edge_index[0] != edge_index[1]
        loops = torch.arange(n, device=x.device)
        ei = torch.cat([edge_index[:, keep], torch.stack([loops, loops])], 1)
        beta = self.self_loop if self_loop is None else self_loop
        w = _gcn_weights(ei, n, beta, x.dtype)
        return self.act(self.conv(x, ei, w))

    def score(self, h: Tensor, summary: Tensor) -> Tensor:
        """Critic logits ``(N,)`` of node embeddings ``h (N, d)`` against ``summary (d,)``."""
        return h @ (self.critic_weight @ summary) + self.critic_bias

    def loss(
        self,
        x: Tensor,
        anchor: Tensor,
        view1: Tensor,
        view2: Tensor,
        generator: torch.Generator | None,
    ) -> Tensor:
        """STABLE's contrastive loss: the node embeddings of the ``anchor`` graph against the
        sigmoid-mean summaries ``s_1, s_2`` of the two augmented views, with row-shuffled
        features on the anchor graph as negatives. As in the authors' DGI code, the critic
        scores of both views are *added* before one binary cross-entropy:
        ``BCE(D(h_i, s_1) + D(h_i, s_2) → 1, D(h̃_i, s_1) + D(h̃_i, s_2) → 0)``; the views are
        encoded with self-loop weight ``β + 1`` (their normalisation adds the identity to
        ``A + βI`` once more).

        Args:
            x: node features ``(N, F)``.
            anchor: the pre-processed graph ``(2, E)``.
            view1: first augmented graph ``(2, E_1)``.
            view2: second augmented graph ``(2, E_2)``.
            generator: randomness of the feature shuffling.

        Returns:
            Scalar loss.
        """
        perm = rng.randperm(x.shape[0], generator=generator, device=x.device)
        h, neg = self(x, anchor), self(x[perm], anchor)
        target = torch.cat([torch.ones(x.shape[0]), torch.zeros(x.shape[0])]).to(h)
        logits = h.new_zeros(2 * x.shape[0])
        for view in (view1, view2):
            s = torch.sigmoid(self(x, view, self.self_loop + 1.0).mean(0))
            logits = logits + torch.cat([self.score(h, s), self.score(neg, s)])
        return F.binary_cross_entropy_with_logits(logits, target)


def contrastive_embeddings(
    x: Tensor,
    kept: Tensor,
    removed: Tensor,
    hidden: int = 512,
    epochs: int = 500,
    recover_ratio: float = 0.2,
    lr: float = 1e-3,
    patience: int = 20,
    self_loop: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Train a :class:`STABLEEncoder` on two recovery-augmented views of the pre-processed graph
    and embed that graph.

    As in the authors' code, the two views (each restoring a random share ``recover_ratio`` of
    the pruned edges, :func:`recover_edges`) are drawn once; training stops when the loss has
    not improved for ``patience`` steps, and the encoder of the lowest loss embeds ``kept``.

    Args:
        x: node features ``(N, F)``.
        kept: edges kept by pre-processing ``(2, E_k)``.
        removed: edges removed by pre-processing ``(2, E_r)``.
        hidden: embedding size ``d``.
        epochs: maximum number of Adam steps.
        recover_ratio: share of removed edges restored in each view.
        lr: Adam learning rate.
        patience: early-stopping patience on the training loss (steps).
        self_loop: encoder self-loop weight ``β``.
        generator: source of randomness (views, corruptions); weights use the global seed.

    Returns:
        Detached embeddings ``(N, d)`` of the pre-processed graph ``kept``.
    """
    check_int(epochs, "epochs", 0)
    check_int(patience, "patience", 1)
    n = x.shape[0]
    enc = STABLEEncoder(x.shape[1], hidden, self_loop).to(device=x.device, dtype=x.dtype)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    v1 = recover_edges(kept, removed, recover_ratio, n, generator)
    v2 = recover_edges(kept, removed, recover_ratio, n, generator)
    best, wait, state = float("inf"), 0, None
    for _ in range(epochs):
        enc.train()
        opt.zero_grad()
        loss = enc.loss(x, kept, v1, v2, generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"STABLE contrastive loss is {float(loss.detach())}")
        value = float(loss.detach())
        if value < best:
            best, wait = value, 0
            state = {k: v.detach().clone() for k, v in enc.state_dict().items()}
        else:
            wait += 1
            if wait >= patience:
                break
        loss.backward()
        opt.step()
    if state is not None:
        enc.load_state_dict(state)
    enc.eval()
    with torch.no_grad():
        return enc(x, kept)


# --------------------------------------------------------------------------------------------
# 3. Refinement by embedding similarity
# --------------------------------------------------------------------------------------------
def refine_graph(
    z: Tensor, edge_index: Tensor, t1: float = 0.1, k: int = 3, min_degree: int = 1
) -> Tensor:
    """STABLE's refinement: drop edges whose embedding cosine similarity is at most ``t1``,
    then give every node its ``k`` most similar *reliable* nodes as extra neighbours.

    Reliable nodes are those keeping more than ``min_degree`` neighbours after the pruning (the
    authors' ``degree_threshold``): helpers come from the well-connected part of the graph.
    Helper edges are directed ``helper → node`` (the node aggregates from its helpers, like
    the authors' ``adj[i, topk(i)] = 1``); kept edges stay undirected. Here ``k`` counts
    helpers: the authors' top-``k`` also ranks the node itself (cosine 1) and then clears the
    self-loop, so their ``k`` gives a reliable node ``k − 1`` helpers.

    Args:
        z: node embeddings ``(N, d)``.
        edge_index: undirected edges ``(2, E)`` (the attacked graph).
        t1: cosine threshold; edges with similarity ``<= t1`` are removed.
        k: helper neighbours added per node (0 adds none).
        min_degree: a node can be a helper only with more than ``min_degree`` kept neighbours
            (``-1`` lets every node help).

    Returns:
        Coalesced ``edge_index`` ``(2, E')`` without self-loops: every kept edge in both
        directions plus, for each target ``i``, edges from its ``k`` helpers (fewer when there
        are fewer than ``k`` reliable nodes other than ``i``).
    """
    n = z.shape[0]
    check_int(k, "k", 0)
    if k >= n:
        raise ValueError(f"k must be < number of nodes {n}, got {k}")
    _check_edge_index(edge_index, n)
    zn = F.normalize(z.detach(), dim=1)
    pairs = _upper(edge_index, n)
    cos = (zn[pairs[0]] * zn[pairs[1]]).sum(1)
    kept = _sym(pairs[:, cos > t1], n)
    if k == 0:
        return kept
    deg = torch.bincount(kept[1], minlength=n)
    sim = zn @ zn.T
    sim[:, deg <= min_degree] = -float("inf")
    sim.fill_diagonal_(-float("inf"))
    val, top = sim.topk(k, dim=1)
    dst = torch.arange(n, device=z.device).repeat_interleave(k)
    ok = torch.isfinite(val.reshape(-1))
    helpers = torch.stack([top.reshape(-1)[ok], dst[ok]])
    return coalesce(torch.cat([kept, helpers], 1), num_nodes=n)


# --------------------------------------------------------------------------------------------
# 4. Advanced GCN
# --------------------------------------------------------------------------------------------
def advanced_gcn_norm(
    edge_index: Tensor,
    num_nodes: int,
    alpha: float = -0.5,
    edge_weight: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Edge weights of ``Â = rownorm(D^α (A + I) D^α)`` (rows = targets, as PyG aggregates).

    Args:
        edge_index: edges ``(2, E)``, ``edge_index[0]`` sources ``j``, ``edge_index[1]``
            targets ``i``; existing self-loops are replaced by weight-1 ones.
        num_nodes: ``N``.
        alpha: degree exponent ``α``.
        edge_weight: optional weights ``(E,)`` of ``A`` (default ones).
        dtype: dtype of the weights.

    Returns:
        ``(edge_index', weight')``: edges with self-loops added ``(2, E')`` and ``Â`` entries
        ``(E',)``; the weights into every target sum to one.
    """
    _check_edge_index(edge_index, num_nodes)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    not_loop = edge_index[0] != edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device)
    ei = torch.cat([edge_index[:, not_loop], torch.stack([loops, loops])], 1)
    w = torch.cat(
        [edge_weight[not_loop].to(dtype), torch.ones(num_nodes, dtype=dtype, device=ei.device)]
    )
    src, dst = ei
    deg = torch.zeros(num_nodes, dtype=dtype, device=ei.device).index_add_(0, dst, w)
    dpow = deg.pow(alpha)
    w = dpow[dst] * w * dpow[src]
    rows = torch.zeros(num_nodes, dtype=dtype, device=ei.device).index_add_(0, dst, w)
    return ei, w / rows[dst]


def _as_edge_index(edge_index: Tensor) -> tuple[Tensor, Tensor | None]:
    """Accept ``edge_index (2, E)`` or a sparse ``adj_t (N, N)`` (row = target, like PyG)."""
    if edge_index.is_sparse or edge_index.layout in (torch.sparse_csr, torch.sparse_csc):
        ei, w = to_edge_index(edge_index)
        return ei.flip(0), w
    return edge_index, None


class AdvancedGCNConv(MessagePassing):
    """STABLE's advanced graph convolution ``X' = Â X W + b`` with
    ``Â = rownorm(D^α (A + I) D^α)``.

    Args:
        in_channels: input feature size ``F``.
        out_channels: output size ``F'``.
        alpha: degree exponent ``α`` (``-0.5`` row-normalises the usual symmetric GCN matrix;
            more negative values down-weight high-degree neighbours further).
        bias: add a learnable bias.

    Shapes:
        ``x (N, F)``, ``edge_index (2, E)`` or sparse ``adj_t (N, N)`` → ``(N, F')``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, alpha: float = -0.5, bias: bool = True
    ) -> None:
        super().__init__(aggr="add")
        self.alpha = alpha
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Apply the convolution (see class docstring for shapes)."""
        ei, w = _as_edge_index(edge_index)
        check_graph(x, ei)
        ei, w = advanced_gcn_norm(ei, x.shape[0], self.alpha, w, x.dtype)
        out = self.propagate(ei, x=self.lin(x), edge_weight=w)
        return out if self.bias is None else out + self.bias

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        """Weighted message ``Â_ij x_j``."""
        return edge_weight[:, None] * x_j


class AdvancedGCN(nn.Module):
    """Two-layer :class:`AdvancedGCNConv` network with ReLU and dropout.

    Args:
        in_channels: feature size ``F``.
        hidden: hidden size.
        out_channels: number of classes ``C``.
        alpha: degree exponent of both layers.
        dropout: dropout probability on the inputs of both layers.

    Shapes:
        ``x (N, F)``, ``edge_index (2, E)`` → logits ``(N, C)``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_channels: int,
        alpha: float = -0.5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv1 = AdvancedGCNConv(in_channels, hidden, alpha)
        self.conv2 = AdvancedGCNConv(hidden, out_channels, alpha)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Logits ``(N, C)``."""
        x = F.dropout(x, self.dropout, self.training)
        x = torch.relu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


def _as_tuple(v: float | Sequence[float]) -> tuple[float, ...]:
    return tuple(float(a) for a in v) if isinstance(v, Sequence) else (float(v),)


@dataclass
class STABLE:
    """The full STABLE pipeline: pre-process, learn representations, refine, train the
    advanced GCN on the refined graph.

    Defaults follow the authors' code and README (Cora, 5% Metattack row: ``jt = 0.03``,
    ``cos = 0.1``, ``k = 5``, ``α = −0.3``, ``β = 2``; 512-d DGI embeddings; a 16-unit
    two-layer GCN trained 200 epochs). As there, the advanced GCN takes the contrastive
    representations as its input features (``use_embeddings=True``); ``False`` feeds it the
    raw features instead.

    ``t1``, ``k`` and ``alpha`` may be sequences: :meth:`fit` then trains one advanced GCN per
    combination on the same embeddings and keeps the one with the best validation accuracy
    (the authors tune them per dataset and perturbation rate; their README gives the values).

    Args:
        jaccard_threshold: pre-processing threshold on feature Jaccard similarity.
        recover_ratio: share of pruned edges restored in each contrastive view.
        t1: cosine threshold(s); refinement drops edges with similarity ``<= t1``.
        k: helper neighbours added per node (one value or several).
        alpha: degree exponent(s) of the advanced GCN.
        embed_dim: contrastive embedding size.
        embed_epochs: maximum contrastive training steps (early stopping on the loss).
        embed_lr: contrastive Adam learning rate.
        embed_patience: early-stopping patience of the contrastive training.
        self_loop: self-loop weight ``β`` of the contrastive encoder.
        min_degree: helpers must keep more than this many neighbours after pruning.
        use_embeddings: feed the representations (True) or the raw features (False) to the
            GCN; ``(True, False)`` lets the validation split choose.
        hidden: advanced GCN hidden size.
        epochs: advanced GCN training epochs (best validation weights kept).
        dropout: advanced GCN dropout.
        lr: advanced GCN learning rate.
        weight_decay: advanced GCN weight decay.

    Attributes (after :meth:`fit`): ``model`` (the trained :class:`AdvancedGCN`),
    ``refined`` (the refined ``edge_index`` the model runs on), ``embeddings``
    ``(N, embed_dim)``, ``chosen`` (the selected ``t1``, ``k``, ``alpha``).
    """

    jaccard_threshold: float = 0.03
    recover_ratio: float = 0.2
    t1: float | Sequence[float] = 0.1
    k: int | Sequence[int] = 5
    alpha: float | Sequence[float] = -0.3
    embed_dim: int = 512
    embed_epochs: int = 500
    embed_lr: float = 1e-3
    embed_patience: int = 20
    self_loop: float = 2.0
    min_degree: int = 1
    use_embeddings: bool | Sequence[bool] = True
    hidden: int = 16
    epochs: int = 200
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    model: AdvancedGCN | None = field(default=None, init=False)
    refined: Tensor | None = field(default=None, init=False)
    embeddings: Tensor | None = field(default=None, init=False)
    chosen: dict[str, float] = field(default_factory=dict, init=False)
    _inputs: Tensor | None = field(default=None, init=False, repr=False)

    def embed(
        self, x: Tensor, edge_index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Steps 1–2: Jaccard pre-processing and contrastive embeddings ``(N, embed_dim)``
        (also stored in ``self.embeddings``)."""
        check_graph(x, edge_index)
        kept, removed = jaccard_prune(x, edge_index, self.jaccard_threshold)
        z = contrastive_embeddings(
            x,
            kept,
            removed,
            self.embed_dim,
            self.embed_epochs,
            self.recover_ratio,
            self.embed_lr,
            self.embed_patience,
            self.self_loop,
            generator=generator,
        )
        self.embeddings = z
        return z

    def refine(
        self, x: Tensor, edge_index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Steps 1–3 with the first ``t1`` and ``k``: the refined ``edge_index`` of the given
        (attacked) graph."""
        z = self.embed(x, edge_index, generator)
        t1, k = _as_tuple(self.t1)[0], int(_as_tuple(self.k)[0])
        self.refined = refine_graph(z, edge_index, t1, k, self.min_degree)
        return self.refined

    def fit(
        self,
        x: Tensor,
        edge_index: Tensor,
        y: Tensor,
        train_mask: Tensor,
        val_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> STABLE:
        """Refine the graph and train the advanced GCN on it (returns ``self``).

        Args:
            x: features ``(N, F)``.
            edge_index: the (possibly attacked) undirected graph ``(2, E)``.
            y: integer labels ``(N,)``.
            train_mask: boolean ``(N,)`` training nodes.
            val_mask: boolean ``(N,)`` nodes for model and hyper-parameter selection.
            generator: randomness of the augmentations.

        Returns:
            ``self``.
        """
        check_graph(x, edge_index, y)
        ues = (
            (self.use_embeddings,) if isinstance(self.use_embeddings, bool) else self.use_embeddings
        )
        grid = list(
            itertools.product(
                _as_tuple(self.t1), _as_tuple(self.k), _as_tuple(self.alpha), tuple(ues)
            )
        )
        if len(grid) > 1 and val_mask is None:
            raise ValueError("several (t1, k, alpha) values need a val_mask to choose from")
        z = self.embed(x, edge_index, generator)
        n_classes = int(y.max()) + 1
        best = -1.0
        for t1, k, alpha, ue in grid:
            inputs = z if ue else x
            refined = refine_graph(z, edge_index, t1, int(k), self.min_degree)
            model = AdvancedGCN(inputs.shape[1], self.hidden, n_classes, alpha, self.dropout)
            model = model.to(device=x.device, dtype=x.dtype)
            acc = train_node_classifier(
                model,
                inputs,
                refined,
                y,
                train_mask,
                val_mask,
                self.epochs,
                self.lr,
                self.weight_decay,
            )
            if acc > best:
                best = acc
                self.model, self.refined, self._inputs = model, refined, inputs
                self.chosen = {
                    "t1": t1,
                    "k": int(k),
                    "alpha": alpha,
                    "use_embeddings": float(bool(ue)),
                    "val_acc": acc,
                }
        return self

    @torch.no_grad()
    def predict(self, x: Tensor | None = None) -> Tensor:
        """Predicted classes ``(N,)`` on the refined graph (call :meth:`fit` first).

        Args:
            x: ignored (kept for backward compatibility); the model reads the inputs it was
                trained on (the representations or the features given to :meth:`fit`).

        Returns:
            Class indices ``(N,)``.
        """
        if self.model is None or self.refined is None or self._inputs is None:
            raise RuntimeError("call fit first")
        self.model.eval()
        return self.model(self._inputs, self.refined).argmax(1)


# --------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------
def _budget(n_perturbations: int) -> int:
    return check_int(n_perturbations, "n_perturbations", 0)


def random_attack(
    edge_index: Tensor,
    num_nodes: int,
    n_perturbations: int,
    mode: Literal["add", "remove", "flip"] = "add",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random structure perturbation of an undirected graph.

    Args:
        edge_index: undirected edges ``(2, E)``.
        num_nodes: ``N``.
        n_perturbations: number of undirected pairs changed.
        mode: ``"add"`` new random edges, ``"remove"`` random existing ones, or ``"flip"``
            random pairs (either way).
        generator: source of randomness.

    Returns:
        Perturbed undirected ``edge_index`` differing from the input in exactly
        ``n_perturbations`` pairs.
    """
    _check_edge_index(edge_index, num_nodes)
    m = _budget(n_perturbations)
    a = _dense(edge_index, num_nodes)
    iu = torch.triu_indices(num_nodes, num_nodes, 1, device=edge_index.device)
    present = a[iu[0], iu[1]] > 0
    if mode == "add":
        cand = torch.nonzero(~present).squeeze(1)
    elif mode == "remove":
        cand = torch.nonzero(present).squeeze(1)
    elif mode == "flip":
        cand = torch.arange(iu.shape[1], device=edge_index.device)
    else:
        raise ValueError(f"mode must be 'add', 'remove' or 'flip', got {mode!r}")
    if m > cand.numel():
        raise ValueError(f"n_perturbations={m} exceeds the {cand.numel()} candidate pairs")
    pick = cand[rng.randperm(cand.numel(), generator=generator, device=cand.device)[:m]]
    r, c = iu[0, pick], iu[1, pick]
    a[r, c] = 1 - a[r, c]
    a[c, r] = a[r, c]
    return _from_dense(a)


def dice_attack(
    edge_index: Tensor,
    y: Tensor,
    n_perturbations: int,
    add_ratio: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DICE (Waniek et al., 2018): "delete internally, connect externally".

    Args:
        edge_index: undirected edges ``(2, E)``.
        y: integer labels ``(N,)``.
        n_perturbations: total number of undirected pairs changed.
        add_ratio: share of the budget spent on inserting edges between different classes; the
            rest deletes edges between nodes of the same class.
        generator: source of randomness.

    Returns:
        Perturbed undirected ``edge_index``.
    """
    n = y.shape[0]
    _check_edge_index(edge_index, n)
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got {y.dtype}")
    check_probability(add_ratio, "add_ratio")
    m = _budget(n_perturbations)
    n_add = round(m * add_ratio)
    n_del = m - n_add
    a = _dense(edge_index, n)
    iu = torch.triu_indices(n, n, 1, device=edge_index.device)
    present = a[iu[0], iu[1]] > 0
    same = y[iu[0]] == y[iu[1]]
    internal = torch.nonzero(present & same).squeeze(1)
    external = torch.nonzero(~present & ~same).squeeze(1)
    if n_del > internal.numel() or n_add > external.numel():
        raise ValueError(
            f"budget ({n_del} deletions, {n_add} insertions) exceeds the candidates "
            f"({internal.numel()} internal edges, {external.numel()} external non-edges)"
        )
    dels = internal[rng.randperm(internal.numel(), generator=generator, device=a.device)[:n_del]]
    adds = external[rng.randperm(external.numel(), generator=generator, device=a.device)[:n_add]]
    for idx, val in ((dels, 0.0), (adds, 1.0)):
        a[iu[0, idx], iu[1, idx]] = val
        a[iu[1, idx], iu[0, idx]] = val
    return _from_dense(a)


def _dense_norm(a: Tensor) -> Tensor:
    """``D^{-1/2} (A + I) D^{-1/2}`` of a dense (differentiable) adjacency."""
    a = a + torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    d = a.sum(1).pow(-0.5)
    return d[:, None] * a * d[None, :]


def _project_budget(s: Tensor, budget: float) -> Tensor:
    """Euclidean projection of ``s`` onto ``{0 ≤ s ≤ 1, Σ s ≤ budget}`` (bisection on μ)."""
    c = s.clamp(0, 1)
    if float(c.sum()) <= budget:
        return c
    lo, hi = float(s.min()) - 1.0, float(s.max())
    for _ in range(50):
        mu = (lo + hi) / 2
        if float((s - mu).clamp(0, 1).sum()) > budget:
            lo = mu
        else:
            hi = mu
    return (s - hi).clamp(0, 1)


def pgd_attack(
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    train_mask: Tensor,
    n_perturbations: int,
    steps: int = 100,
    inner_steps: int = 50,
    lr: float = 1.0,
    inner_lr: float = 5.0,
    n_samples: int = 20,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gradient-based structure attack: PGD over relaxed edge flips against a linearised GCN
    surrogate, with a meta-gradient through its (unrolled) training when ``inner_steps > 0``.

    Args:
        x: features ``(N, F)``.
        edge_index: clean undirected edges ``(2, E)``.
        y: labels ``(N,)``; only the training nodes' labels are used, the rest are replaced by
            the clean surrogate's predictions (self-training).
        train_mask: boolean ``(N,)`` labelled nodes.
        n_perturbations: number of undirected pairs to flip.
        steps: PGD iterations.
        inner_steps: unrolled gradient-descent steps re-training the surrogate on the perturbed
            graph (poisoning); 0 attacks the fixed clean surrogate (evasion).
        lr: PGD step size; step ``t`` moves ``lr · budget / sqrt(t)`` along the normalised
            gradient.
        inner_lr: learning rate of the surrogate's gradient descent.
        n_samples: Bernoulli samples of the final relaxed flips; the best within budget wins.
        generator: source of randomness (sampling).

    Returns:
        Perturbed undirected ``edge_index`` differing from the input in at most
        ``n_perturbations`` pairs.
    """
    check_graph(x, edge_index, y)
    m = _budget(n_perturbations)
    check_int(steps, "steps", 1)
    check_int(inner_steps, "inner_steps", 0)
    n, dev = x.shape[0], x.device
    a = _dense(edge_index, n, x.dtype)
    iu = torch.triu_indices(n, n, 1, device=dev)
    n_classes = int(y.max()) + 1

    def adjacency(s: Tensor) -> Tensor:
        flip = torch.zeros(n, n, dtype=x.dtype, device=dev)
        flip = flip.index_put((iu[0], iu[1]), s)
        flip = flip + flip.T
        return a + (1 - 2 * a) * flip

    def train_surrogate(adj: Tensor, n_iter: int, create_graph: bool) -> tuple[Tensor, Tensor]:
        p = _dense_norm(adj)
        feats = p @ (p @ x)
        w = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, device=dev, requires_grad=True)
        for _ in range(n_iter):
            loss = F.cross_entropy(feats[train_mask] @ w, y[train_mask]) + 5e-4 * w.pow(2).sum()
            (g,) = torch.autograd.grad(loss, w, create_graph=create_graph)
            w = w - inner_lr * g
        return feats @ w, w

    with torch.enable_grad():
        clean_logits, w_clean = train_surrogate(a, max(inner_steps, 100), create_graph=False)
    labels = torch.where(train_mask, y, clean_logits.detach().argmax(1))
    w_clean = w_clean.detach()

    def attack_loss(s: Tensor) -> Tensor:
        adj = adjacency(s)
        if inner_steps == 0:
            p = _dense_norm(adj)
            logits = p @ (p @ x) @ w_clean
        else:
            logits = train_surrogate(adj, inner_steps, create_graph=True)[0]
        return F.cross_entropy(logits, labels)

    s = torch.zeros(iu.shape[1], dtype=x.dtype, device=dev)
    for t in range(1, steps + 1):
        s = s.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(attack_loss(s), s)
        step = lr * m / (t**0.5) / g.norm().clamp_min(1e-12)
        s = _project_budget(s.detach() + step * g, float(m))
    best_loss, best = -float("inf"), torch.zeros_like(s)
    with torch.no_grad():
        for _ in range(n_samples):
            u = rng.rand(s.shape, generator=generator, device=dev)
            cand = (u < s).to(x.dtype)
            if float(cand.sum()) > m:
                continue
            with torch.enable_grad():
                val = float(attack_loss(cand).detach())
            if val > best_loss:
                best_loss, best = val, cand
        if best_loss == -float("inf"):  # no sample within budget: take the top-m entries
            best = torch.zeros_like(s)
            best[s.topk(m).indices] = 1.0
    return _from_dense(adjacency(best))
