"""FBNet (Wu et al., CVPR 2019): Gumbel-softmax DNAS with a latency lookup-table loss.

Every layer of the supernet outputs ``Σ_i m_{l,i} · b_{l,i}(x)`` with the mask
``m_l = GumbelSoftmax(θ_l | τ)`` (Eq. 6), a soft sample of the categorical distribution
``P_θ``. The loss (Eq. 2 with Eq. 8) is

    L(a, w_a) = CE(a, w_a) · α · log(LAT(a))^β,    LAT(a) = Σ_l Σ_i m_{l,i} · LAT(b_{l,i}),

with ``LAT(b_{l,i})`` read from a lookup table measured on the target device
(:func:`torchloom.nas.latency.measure_latency_table`, µs). The temperature is annealed
exponentially, ``τ_e = τ_0 · decay^e`` (the paper: ``τ_0 = 5``, ``decay = 0.956`` per epoch).
Weights ``w`` are trained on one split and ``θ`` on another (80 / 20 in the paper), the first
epochs training ``w`` only (warm-up). After the search, architectures are sampled from
``P_θ`` (:func:`sample_architectures`) or read out as the most likely one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_int, check_positive
from torchloom.core.relax import gumbel_softmax
from torchloom.nas.latency import LatencyTable, arch_latency_matrices
from torchloom.nas.proxyless import model_alphas
from torchloom.nas.search import Batch, GradientStrategy
from torchloom.nas.space import GumbelMixing

__all__ = ["FBNet", "fbnet_loss", "gumbel_temperature", "sample_architectures"]


def gumbel_temperature(epoch: int, tau0: float = 5.0, decay: float = 0.956) -> float:
    """FBNet's exponentially annealed Gumbel-softmax temperature ``τ_0 · decay^epoch``.

    Args:
        epoch: 0-based epoch.
        tau0: initial temperature.
        decay: per-epoch factor in ``(0, 1]``.

    Returns:
        The temperature.
    """
    check_int(epoch, "epoch", minimum=0)
    tau0 = check_positive(tau0, "tau0")
    decay = check_positive(decay, "decay")
    if decay > 1:
        raise ValueError(f"decay must lie in (0, 1], got {decay}")
    return tau0 * decay**epoch


def fbnet_loss(
    ce: torch.Tensor, latency: torch.Tensor, alpha: float = 0.2, beta: float = 0.6
) -> torch.Tensor:
    """FBNet's latency-aware loss ``CE · α · log(LAT)^β`` (Eq. 2).

    Args:
        ce: scalar cross-entropy.
        latency: scalar (expected or masked) latency of the whole network in the table's unit
            (the paper: ms of the target network), ``> 1`` so that ``log`` is positive.
        alpha: magnitude of the loss (paper: 0.2).
        beta: latency exponent (paper: 0.6).

    Returns:
        The scalar loss.
    """
    check_floating(ce, "ce")
    check_floating(latency, "latency")
    check_positive(alpha, "alpha")
    check_positive(beta, "beta", strict=False)
    if bool((latency <= 1.0).any()):
        raise ValueError(
            f"latency must be > 1 so that log(latency) > 0, got {float(latency.min())} (use a "
            "larger target network, a latency_offset for its fixed layers, or another unit)"
        )
    return ce * alpha * latency.log() ** beta


def sample_architectures(
    model: Any, n: int, generator: torch.Generator | None = None
) -> list[dict[str, list[int]]]:
    """Sample ``n`` discrete architectures from ``P_θ = softmax(θ)`` (FBNet, Sec. 3.3).

    Args:
        model: a supernet (``alphas()``).
        n: number of samples.
        generator: randomness.

    Returns:
        ``n`` dicts ``{key: [op index per edge]}``.
    """
    check_int(n, "n")
    out: list[dict[str, list[int]]] = [{} for _ in range(n)]
    for key, a in model_alphas(model).items():
        probs = a.detach().softmax(-1)
        draws = rng.multinomial(probs, n, replacement=True, generator=generator)  # (E, n)
        for i in range(n):
            out[i][key] = [int(v) for v in draws[:, i].tolist()]
    return out


class FBNet(GradientStrategy):
    """The FBNet search procedure (a :class:`~torchloom.nas.search.Strategy`).

    Weight step (training batch): SGD on ``w`` through a Gumbel-softmax mask sampled from the
    (detached) ``θ``. Architecture step (validation batch, after ``arch_start_epoch`` warm-up
    epochs): a fresh mask, :func:`fbnet_loss` with the mask-weighted latency, Adam on ``θ``.
    The temperature follows :func:`gumbel_temperature` per epoch.

    Args:
        latency_table: per-op latencies (µs); ``None`` searches for accuracy only (plain
            Gumbel DNAS). In the paper the table describes the *target* network on the target
            device (full resolution and width), while the search trains a smaller proxy.
        latency_scale: factor applied to the table in the loss (``1e-3``: the paper's ms).
        latency_offset: latency of the fixed (non-searched) layers of the target network,
            added to ``LAT`` in the loss's unit (after ``latency_scale``).
        alpha: loss magnitude ``α``.
        beta: latency exponent ``β``.
        tau0: initial temperature.
        tau_decay: per-epoch temperature factor.
        hard: straight-through one-hot masks instead of soft ones.
        generator: randomness of the Gumbel noise.
        w_lr: SGD learning rate of the weights (paper: 0.1, cosine).
        w_weight_decay: weight decay of the weights (paper: 1e-4).
        a_lr: Adam learning rate of ``θ`` (paper: 0.01).
        a_betas: Adam betas.
        a_weight_decay: ``θ`` weight decay (paper: 5e-4).
        kwargs: the remaining :class:`~torchloom.nas.search.GradientStrategy` options
            (``arch_start_epoch`` is the warm-up).
    """

    def __init__(
        self,
        *,
        latency_table: LatencyTable | None = None,
        latency_scale: float = 1.0,
        latency_offset: float = 0.0,
        alpha: float = 0.2,
        beta: float = 0.6,
        tau0: float = 5.0,
        tau_decay: float = 0.956,
        hard: bool = False,
        generator: torch.Generator | None = None,
        w_lr: float = 0.1,
        w_weight_decay: float = 1e-4,
        a_lr: float = 0.01,
        a_betas: tuple[float, float] = (0.9, 0.999),
        a_weight_decay: float = 5e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            w_lr=w_lr,
            w_weight_decay=w_weight_decay,
            a_lr=a_lr,
            a_betas=a_betas,
            a_weight_decay=a_weight_decay,
            **kwargs,
        )
        self.table = latency_table
        self.latency_scale = check_positive(latency_scale, "latency_scale")
        self.latency_offset = check_positive(latency_offset, "latency_offset", strict=False)
        self.alpha = check_positive(alpha, "alpha")
        self.beta = check_positive(beta, "beta", strict=False)
        self.tau0 = check_positive(tau0, "tau0")
        gumbel_temperature(0, tau0, tau_decay)  # validates decay
        self.tau_decay = float(tau_decay)
        self.mixing = GumbelMixing(tau0, hard, generator)
        self._lat: dict[str, torch.Tensor] | None = None

    @property
    def tau(self) -> float:
        """The current temperature."""
        return float(self.mixing.tau)

    def setup(self, model: Any, epochs: int) -> None:
        """Create the optimisers and the latency matrices.

        Args:
            model: the supernet.
            epochs: length of the run.
        """
        super().setup(model, epochs)
        if self.table is not None:
            self._lat = self._matrices(model)

    def _matrices(self, model: Any) -> dict[str, torch.Tensor]:
        if self.table is None:
            raise ValueError("masked_latency needs a latency_table")
        return {
            k: m * self.latency_scale for k, m in arch_latency_matrices(model, self.table).items()
        }

    def on_epoch_start(self, model: Any, epoch: int) -> None:
        """Anneal the temperature and set the weight learning rate.

        Args:
            model: the supernet.
            epoch: 0-based epoch.
        """
        super().on_epoch_start(model, epoch)
        self.mixing.tau = gumbel_temperature(epoch, self.tau0, self.tau_decay)

    def _masks(self, model: Any, detach: bool) -> dict[str, torch.Tensor]:
        out = {}
        for key, a in model_alphas(model).items():
            logits = a.detach() if detach else a
            out[key] = gumbel_softmax(
                logits, self.mixing.tau, self.mixing.hard, -1, self.mixing.generator
            )
        return out

    def masked_latency(self, model: Any, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``LAT(a) = offset + Σ_l Σ_i m_{l,i} · scale · LAT(b_{l,i})`` (µs by default).

        Args:
            model: the supernet.
            masks: ``{key: (E, N)}`` masks (or probabilities).

        Returns:
            Scalar tensor, differentiable in the masks.
        """
        if self._lat is None:
            self._lat = self._matrices(model)
        total: torch.Tensor | None = None
        for key, m in masks.items():
            term = (m * self._lat[key].to(m)).sum()
            total = term if total is None else total + term
        if total is None:
            raise ValueError("masks must hold at least one group")
        return total + self.latency_offset

    def expected_latency(self, model: Any) -> torch.Tensor:
        """``offset + Σ_l Σ_i P_θ(i) · scale · LAT(b_{l,i})`` (µs by default).

        Args:
            model: the supernet.

        Returns:
            Scalar tensor.
        """
        return self.masked_latency(
            model, {k: a.softmax(-1) for k, a in model_alphas(model).items()}
        )

    def weight_loss(self, model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy through a Gumbel mask of the detached ``θ``.

        Args:
            model: the supernet.
            batch: ``(x, y)``.

        Returns:
            ``(loss, logits)``.
        """
        x, y = batch
        logits = model(x, self._masks(model, detach=True))
        return self.criterion(logits, y), logits

    def arch_step(self, model: Any, train: Batch, val: Batch) -> dict[str, float]:
        """One Adam step on ``θ`` with :func:`fbnet_loss` on a validation batch.

        Args:
            model: the supernet.
            train: a training batch (unused).
            val: a validation batch.

        Returns:
            ``{"arch_loss", "ce"}`` (and ``"latency"``, the mask-weighted latency).
        """
        x, y = val
        alphas = model_alphas(model)
        masks = self._masks(model, detach=False)
        ce = self.criterion(model(x, masks), y)
        out = {"ce": float(ce.detach())}
        if self.table is not None:
            lat = self.masked_latency(model, masks)
            loss = fbnet_loss(ce, lat, self.alpha, self.beta)
            out["latency"] = float(lat.detach())
        else:
            loss = ce
        opt = self._a_opt()
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(alphas.values()))
        self.sync(alphas.values())
        opt.step()
        out["arch_loss"] = float(loss.detach())
        return out

    def on_epoch_end(self, model: Any, epoch: int) -> dict[str, float]:
        """Report the temperature and, with a table, the expected latency.

        Args:
            model: the supernet.
            epoch: 0-based epoch.

        Returns:
            ``{"tau"}`` (and ``"expected_latency"``).
        """
        out = {"tau": self.tau}
        if self.table is not None:
            out["expected_latency"] = float(self.expected_latency(model).detach())
        return out
