"""Tests for torchloom.theory.geometry (Alleman, Lindsey & Fusi 2024)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from torchloom.theory.geometry import (
    aligned_cluster_task,
    cluster_task,
    linear_cka,
    rdm,
    rsa,
    square_task,
    task_alignment,
    train_one_hidden_layer,
)


def _numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), Eq. for linear CKA via HSIC with centred Gram matrices."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return float(hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_)))


@pytest.mark.parametrize("shape", [(30, 5, 7), (10, 40, 3)])
def test_cka_matches_numpy(shape: tuple[int, int, int]) -> None:
    n, d1, d2 = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d1, generator=g, dtype=torch.float64)
    y = x[:, :1] @ torch.randn(1, d2, generator=g, dtype=torch.float64)
    y = y + torch.randn(n, d2, generator=g, dtype=torch.float64)
    assert linear_cka(x, y) == pytest.approx(_numpy_cka(x.numpy(), y.numpy()), rel=1e-9)


def test_cka_self_is_one_and_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(25, 6, generator=g, dtype=torch.float64)
    y = torch.randn(25, 4, generator=g, dtype=torch.float64) + x[:, :4]
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-10)
    # Not invariant to a general (anisotropic) linear map.
    a = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert abs(linear_cka(x @ a, y) - base) > 1e-3


def test_cka_errors_and_constant() -> None:
    with pytest.raises(ValueError):
        linear_cka(torch.randn(4, 2), torch.randn(5, 2))
    assert linear_cka(torch.ones(6, 2), torch.randn(6, 3)) == 0.0


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_rsa_matches_scipy(method: str) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(15, 4, generator=g, dtype=torch.float64)
    y = x @ torch.randn(4, 3, generator=g, dtype=torch.float64) + torch.randn(
        15, 3, generator=g, dtype=torch.float64
    )
    a, b = pdist(x.numpy()), pdist(y.numpy())
    ref = spearmanr(a, b).statistic if method == "spearman" else pearsonr(a, b).statistic
    assert rsa(x, y, method=method) == pytest.approx(float(ref), rel=1e-9)  # type: ignore[arg-type]
    assert rsa(x, x, method=method) == pytest.approx(1.0)  # type: ignore[arg-type]


def test_rdm_correlation_and_spearman_monotone_invariance() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    d = rdm(x, "correlation")
    assert d.shape == (8, 8)
    assert torch.allclose(d.diagonal(), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    ref = 1 - np.corrcoef(x.numpy())
    assert np.allclose(d.numpy(), ref)
    # Scaling one representation (a monotone map of its distances) leaves Spearman RSA at 1.
    assert rsa(x, 4.0 * x, method="spearman") == pytest.approx(1.0)


def test_square_task_shapes_and_labels() -> None:
    g = torch.Generator().manual_seed(4)
    for labels in ("xor", "axis"):
        t = square_task(labels, n_per_cluster=7, input_dim=12, noise=0.0, generator=g)  # type: ignore[arg-type]
        assert t.x.shape == (28, 12) and t.y.shape == (28, 1) and t.cluster.shape == (28,)
        assert t.centers.shape == (4, 12) and t.cluster_targets.shape == (4, 1)
        assert torch.equal(t.x, t.centers[t.cluster])
        # The embedding is an isometry: the square's side 2 and diagonal 2*sqrt(2) survive.
        dist = torch.cdist(t.centers, t.centers)
        assert dist[0, 1].item() == pytest.approx(2.0, abs=1e-5)
        assert dist[0, 3].item() == pytest.approx(2 * 2**0.5, abs=1e-5)
    xor = square_task("xor", 1).cluster_targets.squeeze(1)
    axis = square_task("axis", 1).cluster_targets.squeeze(1)
    # XOR: opposite corners (0, 3) share a label, adjacent (0, 1) do not; axis: the reverse.
    assert xor[0] == xor[3] and xor[0] != xor[1]
    assert axis[0] == axis[1] and axis[0] != axis[3]
    # Aligned targets share more geometry with the inputs than XOR targets do.
    ta, tx = square_task("axis", 5), square_task("xor", 5)
    assert linear_cka(ta.x, ta.y) > 0.3 > linear_cka(tx.x, tx.y)


def test_cluster_task_validation() -> None:
    with pytest.raises(ValueError):
        cluster_task(torch.zeros(3, 2), torch.zeros(4, 1))
    with pytest.raises(ValueError):
        cluster_task(torch.zeros(3, 2), torch.zeros(3), input_dim=1)
    with pytest.raises(ValueError):
        square_task("diagonal")  # type: ignore[arg-type]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_train_one_hidden_layer_learns_xor(activation: str) -> None:
    g = torch.Generator().manual_seed(5)
    task = square_task("xor", 10, input_dim=6, noise=0.05, generator=g)
    net = train_one_hidden_layer(task, activation, width=32, steps=400, lr=0.1, seed=0)  # type: ignore[arg-type]
    assert net.hidden.shape == (40, 32) and net.hidden_init.shape == (40, 32)
    assert net.losses.shape == (400,)
    assert net.losses[-1] < 0.1 * net.losses[0]
    pred = net.model(task.x).sign()
    assert torch.equal(pred, task.y.sign())
    if activation == "relu":
        assert (net.hidden >= 0).all()
    else:
        assert (net.hidden.abs() <= 1).all()
    again = train_one_hidden_layer(task, activation, width=32, steps=400, lr=0.1, seed=0)  # type: ignore[arg-type]
    assert torch.equal(net.hidden, again.hidden)
    other = train_one_hidden_layer(task, activation, width=32, steps=400, lr=0.1, seed=1)  # type: ignore[arg-type]
    assert not torch.equal(net.hidden, other.hidden)


def test_train_validation() -> None:
    task = square_task("axis", 2)
    with pytest.raises(ValueError):
        train_one_hidden_layer(task, "gelu")  # type: ignore[arg-type]


def test_aligned_cluster_task_geometry() -> None:
    g = torch.Generator().manual_seed(6)
    t0 = aligned_cluster_task(0.0, 8, 12, 3, noise=0.0, generator=g)
    assert t0.x.shape == (24, 12) and t0.y.shape == (24, 1)
    # Unit-norm centres; at alpha = 0 they are orthonormal (unstructured inputs).
    c = t0.centers
    assert torch.allclose(c @ c.T, torch.eye(8), atol=1e-5)
    t1 = aligned_cluster_task(1.0, 8, 12, 3, noise=0.0, generator=g)
    # At alpha = 1 the inputs only vary along the label axis: rank one and CKA(x, y) = 1.
    assert torch.linalg.matrix_rank(t1.centers).item() == 1
    assert linear_cka(t1.x, t1.y) == pytest.approx(1.0, abs=1e-6)
    # Inner products follow alpha * y_i y_j off the diagonal, and CKA(x, y) grows with alpha.
    a = 0.3
    ta = aligned_cluster_task(a, 8, 12, 1, noise=0.0, generator=g)
    yy = ta.cluster_targets @ ta.cluster_targets.T
    gram = ta.centers @ ta.centers.T
    assert torch.allclose(gram, a * yy + (1 - a) * torch.eye(8), atol=1e-5)
    ckas = [
        linear_cka(t.x, t.y)
        for t in (aligned_cluster_task(al, 8, 12, 4, generator=g) for al in (0.0, 0.2, 0.6))
    ]
    assert ckas[0] < ckas[1] < ckas[2]
    with pytest.raises(ValueError):
        aligned_cluster_task(1.5)
    with pytest.raises(ValueError):
        aligned_cluster_task(0.1, n_clusters=7)
    with pytest.raises(ValueError):
        aligned_cluster_task(0.1, n_clusters=8, input_dim=8)


def test_task_alignment_is_cka_and_bce_training() -> None:
    g = torch.Generator().manual_seed(7)
    task = aligned_cluster_task(0.0, 4, 10, 4, generator=g)
    # The targets themselves are perfectly target-aligned.
    t_al, i_al = task_alignment(task.y, task)
    assert t_al == pytest.approx(1.0) and i_al == pytest.approx(linear_cka(task.x, task.y))
    net = train_one_hidden_layer(task, "tanh", width=16, steps=300, lr=0.5, loss="bce", bias=False)
    assert net.model[0].bias is None and net.model[2].bias is None
    assert net.losses[-1] < 0.2 * net.losses[0]
    assert torch.equal(net.model(task.x).sign(), task.y)
    # init_scale multiplies the initial parameters.
    a = train_one_hidden_layer(task, "relu", width=8, steps=0, seed=3)
    b = train_one_hidden_layer(task, "relu", width=8, steps=0, seed=3, init_scale=2.0)
    assert torch.allclose(b.model[0].weight, 2 * a.model[0].weight)
    with pytest.raises(ValueError):
        train_one_hidden_layer(task, "tanh", loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        train_one_hidden_layer(task, "tanh", init_scale=0.0)
    with pytest.raises(ValueError):
        bad = cluster_task(torch.eye(2), torch.tensor([0.0, 1.0]), 2)
        train_one_hidden_layer(bad, "tanh", loss="bce", steps=1)
