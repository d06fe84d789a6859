"""TELL: interpretable neural clustering (Peng et al., "XAI Beyond Classification:
Interpretable Neural Clustering", JMLR 2022).

k-means as a differentiable layer whose weights *are* the cluster centres. With normalised codes
``z`` and centres ``Ω_k`` (``‖z‖ = ‖Ω_k‖ = 1``), ``‖z − Ω_k‖² = 2 − 2 Ω_kᵀz``, so assigning ``z`` to
its nearest centre is ``argmax_k W_kᵀz`` with ``W = 2αΩ``: a linear layer followed by a hard
(one-hot) max. The clustering loss ``Σ_i Σ_k I_k(z_i) ‖z_i − Ω_k‖²`` is minimised alternately:
first the centres, with the codes detached and the per-cluster gradient normalised by the cluster
size (the mini-batch k-means step, hence online/streaming use), then the encoder/decoder with the
centres frozen, together with the autoencoder's reconstruction loss. Decoding a centre turns it
into a readable prototype in input space.

Shapes: inputs ``(N, D)``; codes ``(N, d)``; centres ``(K, d)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_positive
from torchloom.core.nn import mlp

__all__ = ["TELL", "TELLClustering"]


class TELL(nn.Module):
    """Autoencoder + clustering layer whose weight rows are the (unit-norm) cluster centres.

    Args:
        in_features: input size ``D``.
        n_clusters: number of clusters ``K``.
        latent: code size ``d``.
        hidden: encoder widths (the decoder mirrors them).
        alpha: scale of the layer weight ``W = 2αΩ`` (never changes the argmax).
        encoder: custom ``D -> d`` module replacing the default MLP; ``nn.Identity()`` together
            with an identity decoder clusters in input space.
        decoder: custom ``d -> D`` module.
        normalize: unit-norm codes and centres (the paper's setting).

    ``forward(x)`` returns ``(z, scores)``: codes ``(N, d)`` and scores ``W z + b`` ``(N, K)``
    with ``W = 2αΩ``. With ``normalize=True`` (the paper's setting) codes and centres are unit
    norm and ``b = 0``; with ``normalize=False`` ``b_k = −α‖Ω_k‖²``, which makes the argmax the
    nearest centre for any codes (plain k-means; use it when the encoder is the identity, since
    normalising raw inputs would discard their norm).
    """

    def __init__(
        self,
        in_features: int,
        n_clusters: int,
        latent: int = 16,
        hidden: tuple[int, ...] = (128,),
        alpha: float = 1.0,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        check_positive(alpha, "alpha")
        self.encoder = encoder if encoder is not None else mlp([in_features, *hidden, latent])
        self.decoder = (
            decoder if decoder is not None else mlp([latent, *reversed(hidden), in_features])
        )
        dim = in_features if isinstance(self.encoder, nn.Identity) else latent
        self.centers = nn.Parameter(
            torch.nn.functional.normalize(torch.randn(n_clusters, dim), dim=1)
        )
        self.alpha = alpha
        self.normalize = normalize

    @property
    def weight(self) -> torch.Tensor:
        """The clustering layer's weight ``W = 2αΩ`` ``(K, d)``."""
        return 2 * self.alpha * self.centers

    @property
    def bias(self) -> torch.Tensor:
        """``b_k = −α‖Ω_k‖²`` ``(K,)`` (constant, hence dropped, when normalised)."""
        if self.normalize:
            return torch.zeros_like(self.centers[:, 0])
        return -self.alpha * self.centers.pow(2).sum(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``z = f(x)`` ``(N, d)``, divided by their norm when ``normalize``."""
        z = self.encoder(x)
        return torch.nn.functional.normalize(z, dim=1) if self.normalize else z

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """``W z + b`` ``(N, K)``: ``−α‖z − Ω_k‖²`` up to a per-sample constant."""
        return z @ self.weight.T + self.bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.scores(z)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Hard assignments ``argmax_k (W z + b)_k`` ``(N,)`` (the nearest centre)."""
        return self.scores(z).argmax(1)

    def clustering_loss(self, z: torch.Tensor) -> torch.Tensor:
        """``mean_i Σ_k I_k(z_i) ‖z_i − Ω_k‖²`` with ``I`` the one-hot of the argmax."""
        onehot = torch.nn.functional.one_hot(self.assign(z.detach()), self.centers.shape[0])
        d2 = torch.cdist(z, self.centers).pow(2)
        return (onehot.to(z.dtype) * d2).sum(1).mean()

    @torch.no_grad()
    def center_step(self, z: torch.Tensor, counts: torch.Tensor, forget: float = 1.0) -> None:
        """Move each centre towards the mean of its detached codes with step ``|C_k| / n_k``
        (``n_k`` the running count: the mini-batch k-means learning rate), then renormalise.

        ``forget < 1`` discounts old counts (``n_k ← forget·n_k + |C_k|``) so centres keep
        tracking codes that move while the encoder trains; ``1`` is exact mini-batch k-means.
        """
        labels = self.assign(z)
        k = self.centers.shape[0]
        onehot = torch.nn.functional.one_hot(labels, k).to(z.dtype)
        batch_counts = onehot.sum(0)
        counts.mul_(forget).add_(batch_counts)
        # normalised gradient of the clustering loss w.r.t. Ω: −2 Σ_{i∈C_k}(z_i − Ω_k) / |C_k|
        sums = onehot.T @ z
        active = batch_counts > 0
        means = sums[active] / batch_counts[active, None]
        eta = (batch_counts[active] / counts[active])[:, None]
        self.centers[active] = (1 - eta) * self.centers[active] + eta * means
        if self.normalize:
            self.centers.copy_(torch.nn.functional.normalize(self.centers, dim=1))

    def prototypes(self) -> torch.Tensor:
        """Centres decoded to input space ``(K, D)``: the readable cluster prototypes."""
        with torch.no_grad():
            return self.decoder(self.centers)


class TELLClustering:
    """scikit-learn-style estimator around :class:`TELL`.

    ``fit(X)`` pretrains the autoencoder, initialises the centres by k-means++ on the codes and
    runs the alternating schedule; ``partial_fit(X)`` does one online pass over a mini-batch
    (streaming use). ``predict``, ``cluster_centers_`` (codes) and ``prototypes_`` (input space).
    """

    def __init__(
        self,
        n_clusters: int,
        latent: int = 16,
        hidden: tuple[int, ...] = (128,),
        pretrain_epochs: int = 30,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        lam: float = 0.1,
        autoencoder: bool = True,
        normalize: bool | None = None,
        forget: float = 1.0,
        n_init: int = 10,
        random_state: int = 0,
    ) -> None:
        if not 0.0 < forget <= 1.0:
            raise ValueError(f"forget must lie in (0, 1], got {forget}")
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
            raise ValueError(f"n_clusters must be an int >= 1, got {n_clusters!r}")
        check_positive(lr, "lr")
        check_positive(lam, "lam", strict=False)
        self.n_clusters = n_clusters
        self.latent = latent
        self.hidden = hidden
        self.pretrain_epochs = pretrain_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lam = lam
        self.autoencoder = autoencoder
        # the paper normalises learned codes; raw inputs keep their norm (plain k-means)
        self.normalize = autoencoder if normalize is None else normalize
        self.forget = forget
        self.n_init = n_init
        self.random_state = random_state

    def _x(self, X: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).float()
        if t.dim() != 2:
            raise ValueError(f"X must have shape (N, D), got {tuple(t.shape)}")
        return t

    def _build(self, x: torch.Tensor) -> None:
        torch.manual_seed(self.random_state)
        if self.autoencoder:
            self.module_ = TELL(
                x.shape[1], self.n_clusters, self.latent, self.hidden, normalize=self.normalize
            )
        else:
            self.module_ = TELL(
                x.shape[1],
                self.n_clusters,
                encoder=nn.Identity(),
                decoder=nn.Identity(),
                normalize=self.normalize,
            )
        self.counts_ = torch.zeros(self.n_clusters)
        self._opt = (
            torch.optim.Adam(
                list(self.module_.encoder.parameters()) + list(self.module_.decoder.parameters()),
                lr=self.lr,
            )
            if self.autoencoder
            else None
        )

    def _batches(self, n: int, g: torch.Generator) -> list[torch.Tensor]:
        return list(torch.randperm(n, generator=g).split(self.batch_size))

    def _init_centers(self, x: torch.Tensor) -> None:
        # as in the paper (and DEC), the clustering layer starts from k-means on the codes
        from sklearn.cluster import KMeans

        with torch.no_grad():
            z = self.module_.encode(x).numpy()
        centers = (
            KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state)
            .fit(z)
            .cluster_centers_
        )
        c = torch.as_tensor(centers, dtype=torch.float32)
        with torch.no_grad():
            self.module_.centers.copy_(
                torch.nn.functional.normalize(c, dim=1) if self.normalize else c
            )
        self._centers_ready = True

    def _network_step(self, xb: torch.Tensor) -> float:
        if self._opt is None:
            return 0.0
        self._opt.zero_grad()
        z = self.module_.encode(xb)
        recon = ((self.module_.decoder(z) - xb) ** 2).mean()
        loss = recon + self.lam * self.module_.clustering_loss(z)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"TELL loss became {float(loss)}; lower lr or lam")
        loss.backward()
        self._opt.step()
        return float(loss.detach())

    def pretrain(self, X: Any) -> TELLClustering:
        """Build the module and train the autoencoder on reconstruction alone
        (``pretrain_epochs``); centres are initialised later (by ``fit`` or the first
        ``partial_fit``)."""
        x = self._x(X)
        self._build(x)
        self._centers_ready = False
        self.loss_: list[float] = []
        g = torch.Generator().manual_seed(self.random_state)
        if self._opt is not None:
            for _ in range(self.pretrain_epochs):
                for idx in self._batches(x.shape[0], g):
                    self._opt.zero_grad()
                    z = self.module_.encode(x[idx])
                    ((self.module_.decoder(z) - x[idx]) ** 2).mean().backward()
                    self._opt.step()
        return self

    def fit(self, X: Any) -> TELLClustering:
        """Pretrain, initialise the centres by k-means++ on all codes, then ``epochs`` passes
        of the alternating schedule over mini-batches."""
        x = self._x(X)
        if x.shape[0] < self.n_clusters:
            raise ValueError(
                f"n_clusters={self.n_clusters} is larger than the {x.shape[0]} samples"
            )
        self.pretrain(x)
        self._init_centers(x)
        g = torch.Generator().manual_seed(self.random_state + 1)
        for _ in range(self.epochs):
            for idx in self._batches(x.shape[0], g):
                self._step(x[idx])
        return self

    def _step(self, xb: torch.Tensor) -> None:
        with torch.no_grad():
            z = self.module_.encode(xb)
        self.module_.center_step(z, self.counts_, self.forget)  # 1) centres, codes detached
        self.module_.centers.requires_grad_(False)  # 2) centres frozen, network moves
        self.loss_.append(self._network_step(xb))
        self.module_.centers.requires_grad_(True)

    def partial_fit(self, X: Any) -> TELLClustering:
        """One online update on a mini-batch (streaming use). Without a prior ``pretrain`` the
        module is built untrained; the first batch seen initialises the centres."""
        x = self._x(X)
        if not hasattr(self, "module_"):
            self._build(x)
            self._centers_ready = False
            self.loss_ = []
        if not self._centers_ready:
            if x.shape[0] < self.n_clusters:
                raise ValueError(
                    f"the first batch must hold at least n_clusters="
                    f"{self.n_clusters} samples, got {x.shape[0]}"
                )
            self._init_centers(x)
        self._step(x)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Cluster index per sample ``(N,)``."""
        if not hasattr(self, "module_"):
            raise RuntimeError("call fit or partial_fit before predict")
        with torch.no_grad():
            return self.module_.assign(self.module_.encode(self._x(X))).numpy()

    def fit_predict(self, X: Any) -> np.ndarray:
        return self.fit(X).predict(X)

    @property
    def cluster_centers_(self) -> np.ndarray:
        """Centres in code space ``(K, d)`` (unit norm when normalised)."""
        return self.module_.centers.detach().numpy().copy()

    @property
    def prototypes_(self) -> np.ndarray:
        """Centres decoded to input space ``(K, D)``."""
        return self.module_.prototypes().numpy()
