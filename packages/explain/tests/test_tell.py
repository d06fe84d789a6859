"""TELL: nearest-centre argmax, k-means agreement on separable blobs, online updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from torch import nn

from torchloom.explain.recipes import cluster_accuracy
from torchloom.explain.tell import TELL, TELLClustering


@given(st.integers(0, 10_000), st.booleans(), st.floats(0.1, 5.0))
def test_layer_argmax_is_nearest_centre(seed: int, normalize: bool, alpha: float) -> None:
    g = torch.Generator().manual_seed(seed)
    m = TELL(4, 5, encoder=nn.Identity(), decoder=nn.Identity(), normalize=normalize, alpha=alpha)
    with torch.no_grad():
        m.centers.copy_(torch.randn(5, 4, generator=g) * 3)
        if normalize:
            m.centers.copy_(torch.nn.functional.normalize(m.centers, dim=1))
    z = m.encode(torch.randn(50, 4, generator=g) * 3)
    nearest = torch.cdist(z, m.centers).argmin(1)
    assert torch.equal(m.assign(z), nearest)
    # the clustering loss is the mean squared distance to the assigned centre
    d2 = torch.cdist(z, m.centers).pow(2).min(1).values.mean()
    torch.testing.assert_close(m.clustering_loss(z), d2, rtol=1e-4, atol=1e-5)


def test_center_step_is_minibatch_kmeans_update() -> None:
    m = TELL(2, 2, encoder=nn.Identity(), decoder=nn.Identity(), normalize=False)
    with torch.no_grad():
        m.centers.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    z = torch.tensor([[1.0, 1.0], [-1.0, 3.0], [9.0, 9.0]])
    counts = torch.zeros(2)
    m.center_step(z, counts)  # first batch: step 1, centres jump to the cluster means
    torch.testing.assert_close(m.centers.detach(), torch.tensor([[0.0, 2.0], [9.0, 9.0]]))
    m.center_step(torch.tensor([[3.0, 2.0]]), counts)  # then n_k grows: step 1/3
    torch.testing.assert_close(m.centers.detach()[0], torch.tensor([1.0, 2.0]))
    assert counts.tolist() == [3.0, 1.0]


@pytest.mark.parametrize("autoencoder", [False, True])
def test_matches_kmeans_on_separable_blobs(autoencoder: bool) -> None:
    x, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.4, random_state=3)
    x = x.astype(np.float32)
    km = KMeans(4, n_init=10, random_state=0).fit_predict(x)
    tell = TELLClustering(
        4, autoencoder=autoencoder, latent=4, pretrain_epochs=40, epochs=5, random_state=0
    ).fit(x)
    assert adjusted_rand_score(km, tell.predict(x)) == 1.0


def test_online_partial_fit_recovers_blobs() -> None:
    x, y = make_blobs(n_samples=400, centers=3, cluster_std=0.5, random_state=1)
    x = x.astype(np.float32)
    model = TELLClustering(3, autoencoder=False, random_state=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for idx in np.array_split(rng.permutation(len(x)), 8):
            model.partial_fit(x[idx])
    assert cluster_accuracy(y, model.predict(x)) == 1.0
    assert model.cluster_centers_.shape == (3, 2)


def test_prototypes_are_decoded_centres() -> None:
    x, _ = make_blobs(n_samples=200, centers=3, n_features=6, random_state=0)
    model = TELLClustering(3, latent=3, pretrain_epochs=2, epochs=1).fit(x.astype(np.float32))
    with torch.no_grad():
        ref = model.module_.decoder(model.module_.centers).numpy()
    np.testing.assert_allclose(model.prototypes_, ref)
    assert model.prototypes_.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1.0, rtol=1e-5)


def test_cluster_accuracy_is_permutation_invariant() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert cluster_accuracy(y, np.array([0, 1, 1, 1, 2, 2])) == pytest.approx(5 / 6)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="larger than the 3 samples"):
        TELLClustering(5).fit(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="n_clusters must be an int >= 1"):
        TELLClustering(0)
    with pytest.raises(ValueError, match=r"X must have shape \(N, D\)"):
        TELLClustering(2).fit(np.zeros(5))
    with pytest.raises(ValueError, match="forget must lie in"):
        TELLClustering(2, forget=0.0)
    with pytest.raises(RuntimeError, match="call fit"):
        TELLClustering(2).predict(np.zeros((2, 2)))
