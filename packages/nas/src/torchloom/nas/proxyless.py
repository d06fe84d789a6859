"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): binarised paths and a latency-aware search loss.

Each layer keeps *one* active path during search. Binary gates ``g`` (one-hot) are sampled from
``p = softmax(α)``; the layer outputs ``Σ_i g_i · o_i(x)``, i.e. the active op only, and the
architecture gradient is the paper's Eq. (4) estimator

    ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i),   ∂L/∂g_j = <∂L/∂out, o_j(x)>,

(:func:`torchloom.core.relax.binary_gate`). Only the active path is computed with a graph and
kept for backward; the other candidates' outputs ``o_j`` are needed only for the scalars
``∂L/∂g_j`` and are recomputed inside the backward pass without storing anything
(:func:`mix_ops`, the reference implementation's ``full_v2`` mode). Training memory is therefore
flat in the number of candidates, unlike DARTS's softmax mixture which stores every path.

Two-path mode (Sec. 3.2.1): two candidates are sampled from the multinomial, the others are
masked as if absent, the gate and estimator are restricted to the pair
(:func:`torchloom.core.relax.binary_gate_two_path`), and after the architecture update the
pair's logits are shifted so that the unsampled paths keep their probabilities
(:func:`rescale_two_path_`).

Latency (Sec. 3.3): ``E[LAT] = Σ_layers Σ_j p_j · LAT_j`` from a lookup table
(:mod:`torchloom.nas.latency`), combined with the cross-entropy by :func:`latency_loss`, either
multiplicatively, ``a · CE · (log E[LAT] / log T)^β`` (the reference code's ``mul#log``), or
additively, ``CE + λ · (E[LAT] − T) / T`` (``add#linear``).

Unbiasedness: for a single edge and a loss quadratic in its output (so that ``∂L/∂out`` is affine),
the expectation of the one-path estimator over the sampled gate equals the gradient of the
softmax-relaxed (DARTS) loss ``L(Σ_j p_j o_j)``; in two-path mode the conditional expectation
given the pair equals the relaxed gradient of the pair restricted to itself. For other losses it
is the paper's first-order approximation ``∂L/∂p_j ≈ ∂L/∂g_j``. Both statements are tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_positive
from torchloom.core.relax import binary_gate, binary_gate_two_path
from torchloom.nas.latency import LatencyTable, arch_latency_matrices
from torchloom.nas.search import Batch, GradientStrategy
from torchloom.nas.space import Mixture, mix_ops

__all__ = [
    "PathSample",
    "ProxylessMixing",
    "ProxylessNAS",
    "latency_loss",
    "mix_ops",
    "model_alphas",
    "rescale_two_path_",
]


@dataclass(frozen=True)
class PathSample(Mixture):
    """A :class:`~torchloom.nas.space.Mixture` of sampled binary paths.

    Attributes:
        weights: ``(E, N)`` one-hot gates (with the ProxylessNAS backward).
        active: ``(E, k)`` int64 ops computed with a graph (the active path).
        lazy: ``(E, m)`` int64 ops whose outputs are recomputed in the backward only, to give
            ``∂L/∂g_j``; ``None`` when no architecture gradient is wanted.
        pair: ``(E, 2)`` the candidate pair in two-path mode, else ``None``.
    """

    lazy: torch.Tensor | None = None
    pair: torch.Tensor | None = None


class ProxylessMixing:
    """Mixing rule sampling ProxylessNAS binary paths from ``softmax(α)``.

    ``mode="one"``: one active op per edge, the estimator over all ``N`` candidates.
    ``mode="two"``: a pair sampled without replacement, one of it active, the estimator over the
    pair. With ``lazy=True`` only the active op is computed with a graph and the others entering
    the estimator are recomputed in the backward pass (:attr:`PathSample.lazy`, read by both the
    DARTS :class:`~torchloom.nas.space.MixedEdge` and the layer-wise
    :class:`~torchloom.nas.blocks.MixedLayer`); with ``lazy=False`` they are all evaluated with a
    graph in the forward (same gradient, memory growing with the candidates).

    Args:
        mode: ``"one"`` or ``"two"``.
        lazy: recompute the non-active ops in the backward instead of storing them.
        generator: source of randomness (global RNG when ``None``).
    """

    def __init__(
        self,
        mode: Literal["one", "two"] = "one",
        lazy: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in ("one", "two"):
            raise ValueError(f"mode must be 'one' or 'two', got {mode!r}")
        self.mode = mode
        self.lazy = bool(lazy)
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> PathSample:
        """Sample binary gates with the ProxylessNAS backward.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            A :class:`PathSample` with one-hot ``weights`` ``(E, N)``.
        """
        check_floating(logits, "logits")
        if logits.dim() != 2:
            raise ValueError(f"logits must have shape (E, N), got {tuple(logits.shape)}")
        E, N = logits.shape
        if self.mode == "two":
            gates, pair = binary_gate_two_path(logits, self.generator)
            active = gates.argmax(-1, keepdim=True)
            other = torch.where(pair[:, :1] == active, pair[:, 1:], pair[:, :1])
            if self.lazy:
                return PathSample(gates, active, other, pair)
            return PathSample(gates, pair, None, pair)
        gates = binary_gate(logits, self.generator)
        active = gates.argmax(-1, keepdim=True)
        if not self.lazy:
            return PathSample(gates, None, None, None)
        ar = torch.arange(N, device=logits.device).expand(E, N)
        rest = ar[ar != active].reshape(E, N - 1)
        return PathSample(gates, active, rest, None)

    def sample(self, logits: torch.Tensor) -> PathSample:
        """A path sample for the *weight* step: one active op per edge, no architecture gradient.

        Args:
            logits: ``(E, N)`` architecture parameters.

        Returns:
            ``PathSample(one_hot, active)`` with detached gates.
        """
        with torch.no_grad():
            probs = logits.detach().softmax(-1)
            active = rng.multinomial(probs, 1, generator=self.generator)
            gates = torch.zeros_like(probs).scatter_(-1, active, 1.0)
        return PathSample(gates, active)


def rescale_two_path_(alpha: torch.Tensor, old_alpha: torch.Tensor, pair: torch.Tensor) -> None:
    """Shift the updated logits of each sampled pair so that unsampled paths keep their
    probabilities (ProxylessNAS two-path mode), in place.

    ``α_pair ← α_pair − (logsumexp(α_pair^new) − logsumexp(α_pair^old))``: the pair's total
    ``Σ exp`` is restored, so ``softmax(α)`` of every other op is unchanged and the pair's
    probability mass is redistributed within it.

    Args:
        alpha: ``(E, N)`` logits after the optimiser step (modified in place).
        old_alpha: ``(E, N)`` logits before the step.
        pair: ``(E, 2)`` int64 sampled pairs.
    """
    check_floating(alpha, "alpha")
    if old_alpha.shape != alpha.shape:
        raise ValueError(
            f"old_alpha must have the shape of alpha {tuple(alpha.shape)}, "
            f"got {tuple(old_alpha.shape)}"
        )
    if pair.dtype != torch.int64 or pair.shape != (alpha.shape[0], 2):
        raise ValueError(
            f"pair must be int64 of shape ({alpha.shape[0]}, 2), got {pair.dtype} "
            f"{tuple(pair.shape)}"
        )
    with torch.no_grad():
        new = alpha.gather(-1, pair)
        old = old_alpha.to(alpha.dtype).gather(-1, pair)
        offset = new.logsumexp(-1, keepdim=True) - old.logsumexp(-1, keepdim=True)
        alpha.scatter_(-1, pair, new - offset)


def latency_loss(
    ce: torch.Tensor,
    latency: torch.Tensor,
    target: float,
    kind: Literal["mul#log", "add#linear"] = "mul#log",
    alpha: float = 0.2,
    beta: float = 0.3,
    lam: float = 0.1,
) -> torch.Tensor:
    """ProxylessNAS latency-regularised loss.

    - ``"mul#log"``: ``alpha · CE · (log E[LAT] / log T)^beta``;
    - ``"add#linear"``: ``CE + lam · (E[LAT] − T) / T``.

    Args:
        ce: scalar cross-entropy.
        latency: scalar expected latency (µs), differentiable in the architecture.
        target: latency target ``T`` (µs; ``> 1`` for the log form).
        kind: ``"mul#log"`` or ``"add#linear"``.
        alpha: scale of the multiplicative form.
        beta: exponent of the multiplicative form.
        lam: weight of the additive form.

    Returns:
        The scalar loss.
    """
    check_floating(ce, "ce")
    check_floating(latency, "latency")
    target = check_positive(target, "target")
    if kind == "mul#log":
        if target <= 1.0:
            raise ValueError(f"target must be > 1 (µs) for the log form, got {target}")
        if bool((latency <= 1.0).any()):
            raise ValueError(
                f"latency must be > 1 (µs) for the log form, got {float(latency.min())}"
            )
        return alpha * ce * (latency.log() / math.log(target)) ** beta
    if kind == "add#linear":
        return ce + lam * (latency - target) / target
    raise ValueError(f"kind must be 'mul#log' or 'add#linear', got {kind!r}")


def model_alphas(model: nn.Module) -> dict[str, torch.Tensor]:
    """The architecture logits of a supernet by group (``model.alphas()``).

    Args:
        model: a DARTS :class:`~torchloom.nas.supernet.Supernet` or a layer-wise
            :class:`~torchloom.nas.blocks.ChainSupernet`.

    Returns:
        ``{key: (E, N)}``.
    """
    fn = getattr(model, "alphas", None)
    if not callable(fn):
        raise TypeError(f"model must have alphas() (a supernet), got {type(model).__name__}")
    out: dict[str, torch.Tensor] = dict(fn())
    return out


class ProxylessNAS(GradientStrategy):
    """The ProxylessNAS search procedure (a :class:`~torchloom.nas.search.Strategy`).

    Architecture step (validation batch): binary gates with the estimator, optionally the
    expected-latency loss, Adam on ``α``; in two-path mode followed by
    :func:`rescale_two_path_`. Weight step (training batch): one path per edge sampled from
    ``softmax(α)``, only that path trained (SGD). Works with
    :func:`~torchloom.nas.search.search` on the DARTS
    :class:`~torchloom.nas.supernet.Supernet` and on the layer-wise
    :class:`~torchloom.nas.blocks.ChainSupernet` alike.

    Args:
        mode: ``"one"`` or ``"two"`` paths.
        lazy: recompute non-active paths in the backward instead of storing them (path-level
            binarisation; works on both supernets).
        latency_table: per-op latencies; ``None`` searches for accuracy only.
        target_latency: the target ``T`` (µs) of :func:`latency_loss`.
        loss_kind: ``"mul#log"`` or ``"add#linear"``.
        loss_params: ``alpha``/``beta``/``lam`` of :func:`latency_loss`.
        generator: source of randomness of the path sampling.
        w_lr: SGD learning rate of the weights (cosine-annealed).
        a_lr: Adam learning rate of the architecture (reference code: 6e-3).
        a_betas: Adam betas (reference code: ``(0, 0.999)``).
        a_weight_decay: architecture weight decay.
        kwargs: the remaining :class:`~torchloom.nas.search.GradientStrategy` options.
    """

    def __init__(
        self,
        *,
        mode: Literal["one", "two"] = "one",
        lazy: bool = True,
        latency_table: LatencyTable | None = None,
        target_latency: float | None = None,
        loss_kind: Literal["mul#log", "add#linear"] = "mul#log",
        loss_params: Mapping[str, float] | None = None,
        generator: torch.Generator | None = None,
        w_lr: float = 0.05,
        a_lr: float = 6e-3,
        a_betas: tuple[float, float] = (0.0, 0.999),
        a_weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            w_lr=w_lr, a_lr=a_lr, a_betas=a_betas, a_weight_decay=a_weight_decay, **kwargs
        )
        self.mixing = ProxylessMixing(mode, lazy, generator)
        if latency_table is not None and target_latency is None:
            raise ValueError("target_latency is required with a latency_table")
        self.table = latency_table
        self.target = target_latency
        if loss_kind not in ("mul#log", "add#linear"):
            raise ValueError(f"loss_kind must be 'mul#log' or 'add#linear', got {loss_kind!r}")
        self.loss_kind: Literal["mul#log", "add#linear"] = loss_kind
        self.loss_params = dict(loss_params or {})
        self._lat: dict[str, torch.Tensor] | None = None

    def setup(self, model: Any, epochs: int) -> None:
        """Create the optimisers and the latency matrices of ``model``.

        Args:
            model: the supernet.
            epochs: length of the run.
        """
        super().setup(model, epochs)
        if self.table is not None:
            self._lat = arch_latency_matrices(model, self.table)

    def expected_latency(self, model: Any) -> torch.Tensor:
        """``E[LAT] = Σ_layers Σ_j softmax(α)_j · LAT_j`` (µs), differentiable in ``α``.

        Args:
            model: the supernet (after :meth:`setup`).

        Returns:
            Scalar tensor.
        """
        if self.table is None:
            raise ValueError("expected_latency needs a latency_table")
        if self._lat is None:
            self._lat = arch_latency_matrices(model, self.table)
        total = torch.zeros(())
        for key, a in model_alphas(model).items():
            total = total.to(a) + (a.softmax(-1) * self._lat[key].to(a)).sum()
        return total

    def weight_loss(self, model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the network with one path per edge sampled from ``softmax(α)``.

        Args:
            model: the supernet.
            batch: ``(x, y)``.

        Returns:
            ``(loss, logits)``.
        """
        x, y = batch
        mix = {k: self.mixing.sample(a) for k, a in model_alphas(model).items()}
        logits = model(x, mix)
        return self.criterion(logits, y), logits

    def arch_loss(self, model: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, PathSample]]:
        """The architecture loss on a batch with freshly sampled binary gates.

        Args:
            model: the supernet.
            batch: ``(x, y)`` validation batch.

        Returns:
            ``(loss, mixtures)``; the mixtures hold the sampled pairs for two-path rescaling.
        """
        x, y = batch
        mix = {k: self.mixing(a) for k, a in model_alphas(model).items()}
        loss = self.criterion(model(x, mix), y)
        if self.table is not None and self.target is not None:
            loss = latency_loss(
                loss, self.expected_latency(model), self.target, self.loss_kind, **self.loss_params
            )
        return loss, mix

    def arch_step(self, model: Any, train: Batch, val: Batch) -> dict[str, float]:
        """One Adam step on the architecture logits (validation batch).

        Args:
            model: the supernet.
            train: a training batch (unused).
            val: a validation batch.

        Returns:
            ``{"arch_loss"}`` (and ``"latency"`` with a table).
        """
        alphas = model_alphas(model)
        old = {k: a.detach().clone() for k, a in alphas.items()}
        loss, mix = self.arch_loss(model, val)
        opt = self._a_opt()
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(alphas.values()))
        self.sync(alphas.values())
        opt.step()
        if self.mixing.mode == "two":
            for k, a in alphas.items():
                pair = mix[k].pair
                if pair is not None:
                    rescale_two_path_(a, old[k], pair)
        out = {"arch_loss": float(loss.detach())}
        if self.table is not None:
            out["latency"] = float(self.expected_latency(model).detach())
        return out

    def probabilities(self, model: Any) -> dict[str, torch.Tensor]:
        """``softmax(α)`` per architecture-parameter group.

        Args:
            model: the supernet.

        Returns:
            ``{key: (E, N)}``.
        """
        return {k: a.detach().softmax(-1) for k, a in model_alphas(model).items()}
