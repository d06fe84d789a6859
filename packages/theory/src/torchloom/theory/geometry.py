"""Task structure and nonlinearity shape learned representational geometry.

Alleman, Lindsey & Fusi (ICLR 2024): on tasks whose inputs sit on a few clusters and whose
targets group those clusters either along or against the input geometry, a one-hidden-layer
tanh network's hidden representation comes to mirror the *target* geometry, while a ReLU
network's keeps more of the *input* geometry. This module provides the similarity measures
(linear CKA, RSA), the parameterised cluster tasks and the one-hidden-layer experiment.

:func:`aligned_cluster_task` is the paper's binary-classification family with a knob on the
alignment of input and label geometry: cluster centres ``sqrt(alpha) y_i u + sqrt(1 - alpha) r_i``
mix a shared label (inter-class) axis ``u`` with cluster-specific orthogonal directions ``r_i``
(the intra-class structure of the paper's Fig. 1C); ``alpha = 0`` is the unstructured task.
Trained with the logistic (binary cross-entropy) loss in the feature-learning regime, tanh
hidden layers end more target-aligned and ReLU hidden layers more input-aligned at every alpha
(recipe ``theory.geometry``). With mean squared error, which stops learning as soon as the
targets are fitted, the representation stays close to its random initial features and the
ordering was not observed (nor on :func:`square_task` with PyTorch's default biases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "ClusterTask",
    "TrainedNet",
    "aligned_cluster_task",
    "cluster_task",
    "linear_cka",
    "rdm",
    "rsa",
    "square_task",
    "task_alignment",
    "train_one_hidden_layer",
]


def _as_2d(x: Tensor, name: str) -> Tensor:
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(x.shape)}")
    return x


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019) between two feature sets.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``, ``Yc``.

    Args:
        x: (N, D1) features of N examples (a 1-D tensor is read as (N, 1)).
        y: (N, D2) features of the same N examples.

    Returns:
        A value in [0, 1]; invariant to orthogonal transforms and isotropic scaling of either
        argument. 0 if either representation is constant.
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape[0]}, {y.shape[0]}")
    x = x.double()
    y = y.double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    # Work with whichever Gram form is smaller.
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        num = (kx * ky).sum()
        den = kx.norm() * ky.norm()
    else:
        num = (y.T @ x).pow(2).sum()
        den = (x.T @ x).norm() * (y.T @ y).norm()
    if float(den) == 0.0:
        return 0.0
    return float(num / den)


def rdm(x: Tensor, metric: Literal["euclidean", "correlation"] = "euclidean") -> Tensor:
    """Representational dissimilarity matrix of (N, D) features.

    Args:
        x: (N, D) features (a 1-D tensor is read as (N, 1)).
        metric: ``"euclidean"`` gives pairwise Euclidean distances; ``"correlation"`` gives one
            minus the Pearson correlation between the rows (the usual RSA choice for D > 1).

    Returns:
        (N, N) float64 dissimilarities.
    """
    x = _as_2d(x, "x").double()
    if metric == "euclidean":
        return torch.cdist(x, x)
    if metric == "correlation":
        xc = x - x.mean(1, keepdim=True)
        xc = xc / xc.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return 1.0 - xc @ xc.T
    raise ValueError(f"unknown metric {metric!r}")


def _rank(v: Tensor) -> Tensor:
    """Average ranks (ties share their mean rank), as in Spearman's correlation."""
    from scipy.stats import rankdata

    return torch.as_tensor(rankdata(v.cpu().numpy()), dtype=torch.float64)


def rsa(
    x: Tensor,
    y: Tensor,
    method: Literal["spearman", "pearson"] = "spearman",
    metric: Literal["euclidean", "correlation"] = "euclidean",
) -> float:
    """Representational similarity analysis: correlation of the two RDMs' upper triangles.

    Args:
        x: (N, D1) features.
        y: (N, D2) features of the same N examples.
        method: ``"spearman"`` (rank) or ``"pearson"`` correlation of the dissimilarities.
        metric: dissimilarity used for both RDMs (see :func:`rdm`).

    Returns:
        The correlation in [-1, 1] (0 if either RDM is constant).
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y need the same number of rows, got {n}, {y.shape[0]}")
    if n < 3:
        raise ValueError("rsa needs at least 3 examples")
    iu = torch.triu_indices(n, n, offset=1)
    a = rdm(x, metric)[iu[0], iu[1]]
    b = rdm(y, metric)[iu[0], iu[1]]
    if method == "spearman":
        a, b = _rank(a), _rank(b)
    elif method != "pearson":
        raise ValueError(f"unknown method {method!r}")
    a = a - a.mean()
    b = b - b.mean()
    den = a.norm() * b.norm()
    if float(den) == 0.0:
        return 0.0
    return float((a @ b) / den)


@dataclass(frozen=True)
class ClusterTask:
    """Inputs on a few clusters, targets assigned per cluster.

    Attributes:
        x: (N, D) inputs, ``N = C * n_per_cluster``.
        y: (N, K) targets (each row is its cluster's target).
        cluster: (N,) cluster index of each example.
        centers: (C, D) cluster centres in input space.
        cluster_targets: (C, K) target of each cluster.
    """

    x: Tensor
    y: Tensor
    cluster: Tensor
    centers: Tensor
    cluster_targets: Tensor


def cluster_task(
    centers: Tensor,
    cluster_targets: Tensor,
    n_per_cluster: int = 20,
    input_dim: int | None = None,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
) -> ClusterTask:
    """A task with inputs drawn around given cluster centres and per-cluster targets.

    Args:
        centers: (C, d) cluster centres in a d-dimensional latent input space.
        cluster_targets: (C, K) target of each cluster (1-D is read as (C, 1)).
        n_per_cluster: examples per cluster.
        input_dim: if given (>= d), the centres are embedded in ``input_dim`` dimensions by a
            random isometry (so the input geometry is preserved), else the inputs are d-dim.
        noise: standard deviation of isotropic Gaussian noise around each centre.
        generator: torch generator for the embedding and the noise.

    Returns:
        A :class:`ClusterTask` with ``x`` of shape (C * n_per_cluster, input_dim or d).
    """
    centers = _as_2d(centers, "centers").float()
    targets = _as_2d(cluster_targets, "cluster_targets").float()
    c, d = centers.shape
    if targets.shape[0] != c:
        raise ValueError(f"need one target row per cluster ({c}), got {targets.shape[0]}")
    if n_per_cluster < 1:
        raise ValueError("n_per_cluster must be >= 1")
    if input_dim is not None:
        if input_dim < d:
            raise ValueError(f"input_dim ({input_dim}) must be >= the centres' dimension ({d})")
        q, _ = torch.linalg.qr(torch.randn(input_dim, d, generator=generator))
        centers = centers @ q.T
    cluster = torch.arange(c).repeat_interleave(n_per_cluster)
    x = centers[cluster] + noise * torch.randn(
        c * n_per_cluster, centers.shape[1], generator=generator
    )
    return ClusterTask(
        x=x, y=targets[cluster], cluster=cluster, centers=centers, cluster_targets=targets
    )


def square_task(
    labels: Literal["xor", "axis"] = "xor",
    n_per_cluster: int = 20,
    input_dim: int | None = None,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
) -> ClusterTask:
    """Four clusters at the corners (±1, ±1) of a square with one binary (±1) target.

    ``"axis"`` labels the corners by their first coordinate, so the target grouping is aligned
    with the input geometry (neighbouring corners share a label); ``"xor"`` labels them by the
    product of the coordinates, so diagonally opposite (most distant) corners share a label and
    the target geometry is orthogonal to the input geometry.

    Args:
        labels: ``"xor"`` or ``"axis"``.
        n_per_cluster: examples per corner.
        input_dim: embedding dimension (see :func:`cluster_task`).
        noise: standard deviation of the Gaussian noise around each corner.
        generator: torch generator.

    Returns:
        A :class:`ClusterTask` with C = 4 clusters and K = 1 target.
    """
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    if labels == "xor":
        t = corners[:, 0] * corners[:, 1]
    elif labels == "axis":
        t = corners[:, 0].clone()
    else:
        raise ValueError(f"unknown labels {labels!r}")
    return cluster_task(corners, t, n_per_cluster, input_dim, noise, generator)


def aligned_cluster_task(
    alpha: float,
    n_clusters: int = 8,
    input_dim: int = 30,
    n_per_cluster: int = 5,
    noise: float = 0.05,
    generator: torch.Generator | None = None,
) -> ClusterTask:
    """Binary classification of clusters with a tunable input/label alignment ``alpha``.

    Cluster ``i`` has label ``y_i = +1`` for even and ``-1`` for odd ``i`` and centre
    ``sqrt(alpha) y_i u + sqrt(1 - alpha) r_i`` where ``u, r_1, ..., r_C`` are random orthonormal
    directions in ``input_dim`` dimensions (every centre has unit norm). ``alpha = 0`` gives
    unstructured inputs (labels unrelated to the input geometry), ``alpha = 1`` inputs that only
    vary along the label axis; the input/target CKA grows monotonically in between.

    Args:
        alpha: alignment in [0, 1].
        n_clusters: C, an even number >= 2.
        input_dim: D >= C + 1.
        n_per_cluster: examples per cluster.
        noise: each example is its centre plus ``noise / sqrt(D)`` times standard Gaussian noise.
        generator: torch generator for the directions and the noise.

    Returns:
        A :class:`ClusterTask` with ``x`` (C * n_per_cluster, D) and ``y`` (C * n_per_cluster, 1).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if n_clusters < 2 or n_clusters % 2:
        raise ValueError(f"n_clusters must be an even number >= 2, got {n_clusters}")
    if input_dim < n_clusters + 1:
        raise ValueError(f"input_dim must be >= n_clusters + 1 = {n_clusters + 1}, got {input_dim}")
    y = torch.tensor([1.0, -1.0]).repeat(n_clusters // 2)
    q, _ = torch.linalg.qr(torch.randn(input_dim, n_clusters + 1, generator=generator))
    centers = alpha**0.5 * y[:, None] * q[:, 0] + (1.0 - alpha) ** 0.5 * q[:, 1:].T
    return cluster_task(centers, y, n_per_cluster, None, noise / input_dim**0.5, generator)


def task_alignment(hidden: Tensor, task: ClusterTask) -> tuple[float, float]:
    """Target and input alignment of a representation: linear CKA with ``task.y`` and ``task.x``.

    Args:
        hidden: (N, H) representation of the task's N examples.
        task: the :class:`ClusterTask` the representation was computed on.

    Returns:
        ``(cka(hidden, y), cka(hidden, x))``, each in [0, 1].
    """
    return linear_cka(hidden, task.y), linear_cka(hidden, task.x)


@dataclass
class TrainedNet:
    """Result of :func:`train_one_hidden_layer`.

    Attributes:
        model: ``nn.Sequential(Linear(D, width), activation, Linear(width, K))``.
        hidden: (N, width) hidden-layer activations on the task's inputs after training.
        hidden_init: (N, width) hidden-layer activations at initialisation.
        losses: (steps,) training loss at each step.
    """

    model: nn.Sequential
    hidden: Tensor
    hidden_init: Tensor
    losses: Tensor


def train_one_hidden_layer(
    task: ClusterTask,
    activation: Literal["tanh", "relu"] = "tanh",
    width: int = 100,
    steps: int = 1000,
    lr: float = 0.05,
    seed: int = 0,
    loss: Literal["mse", "bce"] = "mse",
    bias: bool = True,
    init_scale: float = 1.0,
) -> TrainedNet:
    """Train ``Linear -> activation -> Linear`` on ``task`` by full-batch gradient descent.

    Args:
        task: the task; ``task.y`` are the (N, K) targets (±1 labels for ``loss="bce"``).
        activation: ``"tanh"`` or ``"relu"``.
        width: number of hidden units.
        steps: gradient-descent steps.
        lr: learning rate.
        seed: seed of the (PyTorch default) initialisation.
        loss: ``"mse"`` (mean squared error) or ``"bce"`` (logistic loss
            ``mean(softplus(-y f(x)))`` on ±1 labels, i.e. binary cross-entropy).
        bias: whether both layers have biases.
        init_scale: factor applied to every initial parameter.

    Returns:
        A :class:`TrainedNet` with the model and the (N, width) hidden representations.
    """
    acts: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
    if activation not in acts:
        raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
    if width < 1 or steps < 0:
        raise ValueError("width must be >= 1 and steps >= 0")
    if loss not in ("mse", "bce"):
        raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
    if init_scale <= 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale}")
    x, y = task.x.float(), task.y.float()
    if loss == "bce" and not bool((y.abs() == 1).all()):
        raise ValueError("loss='bce' needs task.y in {-1, +1}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Linear(x.shape[1], width, bias=bias),
            acts[activation](),
            nn.Linear(width, y.shape[1], bias=bias),
        )
    if init_scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(init_scale)
    with torch.no_grad():
        hidden_init = model[1](model[0](x)).clone()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = torch.empty(steps)
    for i in range(steps):
        opt.zero_grad()
        out = model(x)
        value = (
            (out - y).pow(2).mean() if loss == "mse" else nn.functional.softplus(-y * out).mean()
        )
        value.backward()
        opt.step()
        losses[i] = value.detach()
    with torch.no_grad():
        hidden = model[1](model[0](x)).clone()
    return TrainedNet(model=model, hidden=hidden, hidden_init=hidden_init, losses=losses)
