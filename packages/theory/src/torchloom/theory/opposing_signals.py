"""Outliers with opposing signals: per-example loss tracking, paired groups, sharpness, toy.

Rosenfeld & Risteski, *Outliers with Opposing Signals Have an Outsized Effect on Neural Network
Optimization* (ICLR 2024). Some training examples carry a large-magnitude feature that pulls
the output in opposite directions in two groups (e.g. "sky" in planes vs. other classes).
Early training balances the two groups in a narrow valley; as the network sharpens, the
balance breaks and the two groups' losses oscillate against each other (one high while the
other is low) until the total loss spikes.

This module finds such groups from training dynamics alone (Sec. 2 of the paper: the examples
whose loss changes most between iterations), splits them into the two opposing groups by the
sign of the leading principal component of their loss changes, and measures what sets them
apart: anti-correlated loss changes, opposing mean gradients, feature magnitude. It also
provides the top Hessian eigenvalue (sharpness) by power iteration on Hessian-vector products
and the paper's toy model: a two-layer linear network ``f(x) = v^T W x`` on data with a
label-carrying core feature and a rare large feature ``x_o = alpha`` shared by two groups with
opposite labels (Sec. 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_int, check_positive, check_probability
from torchloom.core.func import hvp

__all__ = [
    "LossTracker",
    "OpposingGroups",
    "OpposingSignalsToy",
    "TwoLayerLinear",
    "find_opposing_groups",
    "gradient_cosine",
    "group_loss_correlation",
    "opposing_signals_toy",
    "per_example_loss",
    "sharpness",
    "top_changing_examples",
]

LossLike = Literal["cross_entropy", "mse"] | Callable[[Tensor, Tensor], Tensor]


def _loss_fn(loss: LossLike) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return lambda out, y: nn.functional.cross_entropy(out, y, reduction="none")
    if loss == "mse":

        def mse(out: Tensor, y: Tensor) -> Tensor:
            d = (out - y.to(out.dtype)).reshape(out.shape[0], -1)
            return 0.5 * (d * d).sum(-1)

        return mse
    raise ValueError(f"loss must be 'cross_entropy', 'mse' or a callable, got {loss!r}")


def per_example_loss(
    model: nn.Module, x: Tensor, y: Tensor, loss: LossLike = "cross_entropy"
) -> Tensor:
    """Loss of every example under ``model`` (no gradient).

    Args:
        model: any module ``(N, *in) -> (N, *out)``.
        x: ``(N, *in)`` inputs.
        y: ``(N,)`` class labels for ``"cross_entropy"``; targets shaped like the output
            (or ``(N,)`` for a ``(N,)`` / ``(N, 1)`` output) for ``"mse"``
            (``0.5 ||f(x) - y||^2``); anything a callable ``loss(out, y) -> (N,)`` accepts.
        loss: ``"cross_entropy"``, ``"mse"`` or a callable returning per-example losses.

    Returns:
        ``(N,)``.
    """
    fn = _loss_fn(loss)
    with torch.no_grad():
        out = model(x)
        if out.ndim == 2 and out.shape[1] == 1 and y.ndim == 1 and not callable(loss):
            out = out[:, 0] if loss == "mse" else out
        val = fn(out, y)
    if val.shape != (x.shape[0],):
        raise ValueError(f"loss must return per-example values ({x.shape[0]},), got {val.shape}")
    return val


class LossTracker:
    """Records the per-example loss of a fixed set of examples across training.

    Call :meth:`record` after each optimisation step; :attr:`losses` stacks the records.

    Shapes: ``x (N, *in)``, ``y (N, ...)``; ``losses (T, N)``.
    """

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, loss: LossLike = "cross_entropy"
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y need the same batch size, got {x.shape[0]}, {y.shape[0]}")
        self.model, self.x, self.y, self.loss = model, x, y, loss
        self.steps: list[int] = []
        self._rows: list[Tensor] = []

    def record(self, step: int | None = None) -> Tensor:
        """Evaluate and store the current per-example losses.

        Args:
            step: the training step (defaults to the number of records so far).

        Returns:
            ``(N,)`` the losses just recorded.
        """
        row = per_example_loss(self.model, self.x, self.y, self.loss).detach()
        self._rows.append(row)
        self.steps.append(len(self.steps) if step is None else int(step))
        return row

    @property
    def losses(self) -> Tensor:
        """``(T, N)`` losses of every record."""
        if not self._rows:
            raise RuntimeError("no losses recorded yet; call record() first")
        return torch.stack(self._rows)


def _check_losses(losses: Tensor) -> Tensor:
    losses = check_floating(losses, "losses")
    if losses.ndim != 2 or losses.shape[0] < 3:
        raise ValueError(f"losses must be (T, N) with T >= 3 records, got {tuple(losses.shape)}")
    return losses


def top_changing_examples(losses: Tensor, k: int) -> Tensor:
    """The ``k`` examples whose loss changes most across training: largest total variation
    ``sum_t |l_{t+1} - l_t|`` (the paper's selection, summed over steps).

    Args:
        losses: ``(T, N)`` per-example losses.
        k: number of examples, ``1 <= k <= N``.

    Returns:
        ``(k,)`` long indices, most-changing first.
    """
    losses = _check_losses(losses)
    k = check_int(k, "k")
    if k > losses.shape[1]:
        raise ValueError(f"k must be <= N = {losses.shape[1]}, got {k}")
    tv = losses.diff(dim=0).abs().sum(0)
    return tv.argsort(descending=True)[:k]


def group_loss_correlation(losses: Tensor, group_a: Tensor, group_b: Tensor) -> float:
    """Pearson correlation between the step-to-step changes of the two groups' mean losses.

    Opposing groups give a negative value (one group's loss rises when the other's falls).

    Args:
        losses: ``(T, N)`` per-example losses.
        group_a: indices (or ``(N,)`` bool mask) of the first group.
        group_b: indices (or mask) of the second group.

    Returns:
        A correlation in ``[-1, 1]`` (NaN if either series is constant).
    """
    losses = _check_losses(losses)
    da = losses[:, group_a].mean(1).diff()
    db = losses[:, group_b].mean(1).diff()
    da, db = da - da.mean(), db - db.mean()
    return float((da * db).sum() / (da.norm() * db.norm()))


@dataclass(frozen=True)
class OpposingGroups:
    """Two groups of examples with opposing signals.

    Attributes:
        group_a: ``(Na,)`` long indices into the tracked examples.
        group_b: ``(Nb,)`` long indices.
        selected: ``(k,)`` the most-changing examples the groups were split from.
        loadings: ``(k,)`` their loadings on the leading principal component of the loss
            changes (positive -> ``group_a``).
        correlation: :func:`group_loss_correlation` of the two groups.
    """

    group_a: Tensor
    group_b: Tensor
    selected: Tensor
    loadings: Tensor
    correlation: float


def find_opposing_groups(losses: Tensor, k: int) -> OpposingGroups:
    """Select the ``k`` most-changing examples and split them into two opposing groups.

    The loss changes ``D = diff(losses[:, selected])`` (``(T-1, k)``, columns centred) are
    decomposed by SVD; examples load on the leading component with the sign of the phase of
    their oscillation, so the sign splits them into the two groups whose losses move against
    each other.

    Args:
        losses: ``(T, N)`` per-example losses.
        k: number of most-changing examples to split (>= 2).

    Returns:
        An :class:`OpposingGroups`.
    """
    losses = _check_losses(losses)
    k = check_int(k, "k", minimum=2)
    sel = top_changing_examples(losses, k)
    d = losses[:, sel].diff(dim=0).double()
    d = d - d.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(d, full_matrices=False)
    load = vh[0]
    if float(load.sum()) < 0:  # fix the sign: group_a is the larger-loading side
        load = -load
    a, b = sel[load > 0], sel[load <= 0]
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("the selected examples do not split into two groups (no opposition)")
    corr = group_loss_correlation(losses, a, b)
    return OpposingGroups(a, b, sel, load.to(losses.dtype), corr)


def _flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], Tensor]:
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameters with requires_grad=True")
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    return [k for k, _ in named], [p.shape for _, p in named], flat


def _loss_of_flat(
    model: nn.Module, x: Tensor, y: Tensor, loss: LossLike
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    names, shapes, flat = _flat_params(model)
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    fn = _loss_fn(loss)

    def f(theta: Tensor) -> Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            n = math.prod(shape)
            params[name] = theta[i : i + n].reshape(shape)
            i += n
        out = functional_call(model, (params, buffers), (x,))
        if out.ndim == 2 and out.shape[1] == 1 and y.ndim == 1 and loss == "mse":
            out = out[:, 0]
        return fn(out, y).mean()

    return f, flat


def sharpness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: LossLike = "cross_entropy",
    *,
    iters: int = 50,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> float:
    """Top (largest-magnitude) eigenvalue of the Hessian of the mean loss over ``(x, y)``
    with respect to the parameters, by power iteration on Hessian-vector products
    (:func:`torchloom.core.func.hvp`, forward-over-reverse).

    Args:
        model: any module; parameters with ``requires_grad`` are differentiated.
        x: ``(N, *in)`` inputs. y: targets (see :func:`per_example_loss`).
        loss: ``"cross_entropy"``, ``"mse"`` or a per-example callable.
        iters: maximum number of power iterations.
        tol: stop when the Rayleigh quotient changes by less than ``tol`` (relative).
        generator: randomness of the starting vector.

    Returns:
        The eigenvalue estimate (the sharpness; positive near a minimum or at the edge of
        stability, where it hovers around ``2 / lr`` for gradient descent).
    """
    iters = check_int(iters, "iters")
    f, flat = _loss_of_flat(model, x, y, loss)
    v = rng.randn(flat.shape, generator=generator, dtype=flat.dtype, device=flat.device)
    v = v / v.norm()
    lam = 0.0
    for _ in range(iters):
        _, hv = hvp(f, flat, v)
        new = float(v @ hv)
        norm = hv.norm()
        if float(norm) == 0.0:
            return 0.0
        v = hv / norm
        if abs(new - lam) <= tol * max(abs(new), 1e-30):
            return new
        lam = new
    return lam


def gradient_cosine(
    model: nn.Module,
    x_a: Tensor,
    y_a: Tensor,
    x_b: Tensor,
    y_b: Tensor,
    loss: LossLike = "cross_entropy",
) -> float:
    """Cosine between the parameter gradients of the mean loss on two groups (negative for
    opposing signals).

    Args:
        model: any module.
        x_a: ``(Na, *in)``, y_a: group a's targets.
        x_b: ``(Nb, *in)``, y_b: group b's targets.
        loss: as in :func:`per_example_loss`.

    Returns:
        ``<g_a, g_b> / (|g_a| |g_b|)``.
    """
    fa, flat = _loss_of_flat(model, x_a, y_a, loss)
    fb, _ = _loss_of_flat(model, x_b, y_b, loss)
    ga = torch.func.grad(fa)(flat)
    gb = torch.func.grad(fb)(flat)
    return float(ga @ gb / (ga.norm() * gb.norm()))


# --------------------------------------------------------------------------- toy model


@dataclass(frozen=True)
class OpposingSignalsToy:
    """Data of the opposing-signals toy.

    Attributes:
        x: ``(N, D + 1)`` inputs: ``D`` core coordinates, then the outlier coordinate.
        y: ``(N,)`` labels in ``{-1, +1}`` (float).
        group: ``(N,)`` long: 0 ordinary, 1 outlier with ``y = +1``, 2 outlier with ``y = -1``.
    """

    x: Tensor
    y: Tensor
    group: Tensor


def opposing_signals_toy(
    n: int,
    dim: int = 10,
    *,
    alpha: float = 10.0,
    outlier_fraction: float = 0.1,
    noise: float = 0.5,
    signal: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> OpposingSignalsToy:
    """Binary data with a core signal and a rare large opposing feature (Rosenfeld &
    Risteski, Sec. 4): ``x_core = signal y e_1 + noise N(0, I_D)``; a fraction of the examples,
    drawn independently of the label, also carries ``x_o = alpha`` (0 elsewhere). The
    outliers with ``y = +1`` want a positive weight on ``x_o``, those with ``y = -1`` a
    negative one: the two groups' signals oppose each other.

    Args:
        n: number of examples.
        dim: core dimension ``D``.
        alpha: magnitude of the opposing feature (large compared with the core signal).
        outlier_fraction: probability of carrying it.
        noise: standard deviation of the core noise.
        signal: strength of the core signal (a weak one is learned slowly, so sharpness
            grows progressively).
        generator: randomness.
        dtype: floating dtype of ``x`` and ``y``.

    Returns:
        An :class:`OpposingSignalsToy`.
    """
    n = check_int(n, "n", minimum=2)
    dim = check_int(dim, "dim")
    check_positive(alpha, "alpha")
    check_probability(outlier_fraction, "outlier_fraction")
    check_positive(noise, "noise", strict=False)
    check_positive(signal, "signal")
    y = rng.randint(0, 2, (n,), generator=generator).to(dtype) * 2 - 1
    core = noise * torch.randn(n, dim, generator=generator, dtype=dtype)
    core[:, 0] += signal * y
    out = torch.rand(n, generator=generator) < outlier_fraction
    xo = torch.where(out, alpha, 0.0).to(dtype)
    group = torch.zeros(n, dtype=torch.long)
    group[out & (y > 0)] = 1
    group[out & (y < 0)] = 2
    return OpposingSignalsToy(torch.cat([core, xo[:, None]], 1), y, group)


class TwoLayerLinear(nn.Module):
    """Two-layer linear network ``f(x) = v^T W x`` (the paper's analysed model).

    ``W ~ N(0, init_scale^2 / D)``, ``v ~ N(0, init_scale^2 / width)``.

    Shapes: ``(B, D) -> (B,)``.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        *,
        init_scale: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        d, h = check_int(in_features, "in_features"), check_int(width, "width")
        check_positive(init_scale, "init_scale")
        w = torch.randn(h, d, generator=generator, dtype=dtype) * init_scale / math.sqrt(d)
        v = torch.randn(h, generator=generator, dtype=dtype) * init_scale / math.sqrt(h)
        self.weight = nn.Parameter(w)
        self.head = nn.Parameter(v)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, D) -> (B,)``."""
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x must be (B, {self.weight.shape[1]}), got {tuple(x.shape)}")
        out: Tensor = (x @ self.weight.T) @ self.head
        return out

    def effective_weights(self) -> Tensor:
        """The end-to-end linear map ``beta = W^T v``, ``(D,)``."""
        return (self.weight.T @ self.head).detach()
