"""Continuous relaxations of discrete choices: Gumbel-softmax, ProxylessNAS binary gates, L0 gates.

- :func:`gumbel_softmax` (Jang et al. 2017; Maddison et al. 2017): a sample from the
  Gumbel-softmax distribution, optionally discretised with the straight-through estimator.
- :func:`binary_gate` and :func:`binary_gate_two_path` (Cai et al., ProxylessNAS, 2019): sample
  one active path of ``N`` and return one-hot gates whose backward is the ProxylessNAS estimator
  ``∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i)``.
- :func:`hard_concrete` and :func:`hard_concrete_l0` (Louizos et al., 2018): stretched and
  clamped concrete gates with exact zeros and ones, and their expected L0 norm.

Randomness comes only from the ``generator`` argument (the global RNG when it is ``None``); the
outputs have the device and dtype of the inputs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from torchloom.core import rng
from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "binary_gate",
    "binary_gate_two_path",
    "gumbel_softmax",
    "hard_concrete",
    "hard_concrete_l0",
]


def _check_dim(x: torch.Tensor, dim: int, name: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d tensor")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must lie in [{-x.dim()}, {x.dim() - 1}] for {name}, got {dim}")
    return dim % x.dim()


def _check_categories(logits: torch.Tensor, name: str) -> None:
    check_floating(logits, name)
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., N) with N >= 1, got {tuple(logits.shape)}")


def _gumbel_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # -log(E) with E ~ Exp(1) is Gumbel(0, 1); exponential_ never returns 0, so no -inf.
    return -rng.exponential(x, generator=generator).log()


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample from the Gumbel-softmax (concrete) distribution over ``dim``.

    ``y = softmax((logits + G) / tau)`` with ``G`` i.i.d. Gumbel(0, 1). With ``hard=True`` the
    forward value is exactly the one-hot ``argmax`` of ``y`` and the backward is the gradient of
    the soft ``y`` (straight-through estimator). ``argmax`` of the sample is distributed as
    ``softmax(logits)`` for every ``tau``.

    Shapes:
        logits: ``(..., N, ...)`` with the ``N`` categories along ``dim``; output: same shape.
    """
    _check_categories(logits, "logits")
    dim = _check_dim(logits, dim, "logits")
    tau = check_positive(tau, "tau")
    y_soft = ((logits + _gumbel_like(logits, generator)) / tau).softmax(dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
    # y_soft - y_soft.detach() is exactly 0 in the forward, so the value is exactly one-hot
    # (y_hard - y_soft.detach() + y_soft is not: it rounds), while the gradient is the soft one.
    return y_hard + (y_soft - y_soft.detach())


def _sample_index(probs: torch.Tensor, generator: torch.Generator | None, k: int) -> torch.Tensor:
    """``k`` indices without replacement per row of ``probs`` ``(..., N)`` -> ``(..., k)``."""
    flat = probs.reshape(-1, probs.shape[-1])
    idx = rng.multinomial(flat, k, replacement=False, generator=generator)
    return idx.reshape(*probs.shape[:-1], k)


class _BinaryGate(torch.autograd.Function):
    """One-hot gates sampled from ``softmax(logits)``; backward is the ProxylessNAS estimator."""

    @staticmethod
    def forward(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = logits.softmax(-1)
        index = _sample_index(probs, generator, 1)
        return torch.zeros_like(logits).scatter_(-1, index, 1.0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        (logits, _) = inputs
        ctx.save_for_backward(logits)

    @staticmethod
    def backward(ctx: Any, grad_gates: torch.Tensor) -> tuple[torch.Tensor, None]:
        (logits,) = ctx.saved_tensors
        probs = logits.softmax(-1)
        # Σ_j v_j p_j (δ_ij − p_i) = p_i (v_i − Σ_j v_j p_j): the softmax vjp applied to ∂L/∂g.
        return probs * (grad_gates - (grad_gates * probs).sum(-1, keepdim=True)), None


def binary_gate(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ProxylessNAS binary gates: one active path of ``N``, sampled with ``p = softmax(logits)``.

    Returns one-hot gates ``g``. Compute the mixed output as ``out = Σ_i g_i · o_i``: only the
    active path has a non-zero gate, but ``∂L/∂g_j = <∂L/∂out, o_j>`` needs ``o_j`` for every
    path whose gradient should count (ProxylessNAS computes all ``N``, or two with
    :func:`binary_gate_two_path`; paths left out contribute ``∂L/∂g_j = 0``). The backward
    returns the ProxylessNAS estimator ``∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i)``.

    Shapes:
        logits: ``(..., N)``, each row an independent choice; output: ``(..., N)``, one-hot rows.
    """
    _check_categories(logits, "logits")
    out: torch.Tensor = _BinaryGate.apply(logits, generator)
    return out


class _BinaryGateTwoPath(torch.autograd.Function):
    """Two candidate paths sampled without replacement; the estimator is restricted to them."""

    @staticmethod
    def forward(
        logits: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pair = _sample_index(logits.softmax(-1), generator, 2)  # (..., 2)
        pair_probs = logits.gather(-1, pair).softmax(-1)  # renormalised over the pair
        choice = _sample_index(pair_probs, generator, 1)  # (..., 1), 0 or 1
        active = pair.gather(-1, choice)
        gates = torch.zeros_like(logits).scatter_(-1, active, 1.0)
        return gates, pair

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]
    ) -> None:
        (logits, _) = inputs
        _, pair = output
        ctx.mark_non_differentiable(pair)
        ctx.save_for_backward(logits, pair)

    @staticmethod
    def backward(
        ctx: Any, grad_gates: torch.Tensor, _grad_pair: torch.Tensor | None
    ) -> tuple[torch.Tensor, None]:
        logits, pair = ctx.saved_tensors
        q = logits.gather(-1, pair).softmax(-1)
        v = grad_gates.gather(-1, pair)
        grad_pair = q * (v - (v * q).sum(-1, keepdim=True))
        grad = torch.zeros_like(logits).scatter_(-1, pair, grad_pair)
        return grad, None


def binary_gate_two_path(
    logits: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ProxylessNAS memory-saving gates: two candidates, one active, gradient for the two only.

    Two paths ``a, b`` are sampled without replacement from ``softmax(logits)``; their logits are
    renormalised, ``q = softmax(α_a, α_b)``, and one of them is made active with probability
    ``q``. The backward is the binary-gate estimator over the pair,
    ``∂L/∂α_i = Σ_{j∈{a,b}} ∂L/∂g_j · q_j (δ_ij − q_i)`` for ``i ∈ {a, b}``, zero elsewhere, so only
    the two candidate outputs ``o_a, o_b`` need computing.

    Shapes:
        logits: ``(..., N)`` with ``N >= 2``. Returns gates ``(..., N)`` (one-hot rows) and the
        candidate indices ``(..., 2)`` (int64, not differentiable).
    """
    _check_categories(logits, "logits")
    if logits.shape[-1] < 2:
        raise ValueError(
            f"logits must have shape (..., N) with N >= 2 for two-path sampling, "
            f"got {tuple(logits.shape)}"
        )
    gates, pair = _BinaryGateTwoPath.apply(logits, generator)
    return gates, pair


def _check_stretch(beta: float, gamma: float, zeta: float) -> tuple[float, float, float]:
    beta = check_positive(beta, "beta")
    for name, value in (("gamma", gamma), ("zeta", zeta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    # The stretched interval (gamma, zeta) must strictly contain [0, 1], or the clamp never
    # produces exact zeros/ones and the L0 formula below is wrong.
    if not (math.isfinite(gamma) and gamma < 0):
        raise ValueError(f"gamma must be finite and < 0, got {gamma}")
    if not (math.isfinite(zeta) and zeta > 1):
        raise ValueError(f"zeta must be finite and > 1, got {zeta}")
    return beta, float(gamma), float(zeta)


def hard_concrete(
    log_alpha: torch.Tensor,
    beta: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
    generator: torch.Generator | None = None,
    training: bool = True,
) -> torch.Tensor:
    """Hard concrete gates of Louizos et al. (2018), values in ``[0, 1]`` with exact 0 and 1.

    Training: ``u ~ U(0, 1)``, ``s = sigmoid((log u − log(1 − u) + log_alpha) / beta)``,
    ``z = clamp(s (zeta − gamma) + gamma, 0, 1)``. Evaluation (``training=False``), the paper's
    deterministic gate: ``z = clamp(sigmoid(log_alpha) (zeta − gamma) + gamma, 0, 1)``.

    Shapes:
        log_alpha: any shape ``(*)``; output: ``(*)``.
    """
    check_floating(log_alpha, "log_alpha")
    beta, gamma, zeta = _check_stretch(beta, gamma, zeta)
    if training:
        u = rng.rand(
            log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device
        )
        # rand can return exactly 0; keep u in (0, 1) so the logistic noise stays finite.
        eps = torch.finfo(log_alpha.dtype).eps
        u = u.clamp(eps, 1.0 - eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    else:
        s = torch.sigmoid(log_alpha)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def hard_concrete_l0(
    log_alpha: torch.Tensor,
    beta: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
    reduction: Literal["sum", "mean", "none"] = "sum",
) -> torch.Tensor:
    """Expected L0 norm of hard concrete gates: ``Σ P(z ≠ 0)``, differentiable in ``log_alpha``.

    ``P(z ≠ 0) = sigmoid(log_alpha − beta · log(−gamma / zeta))`` per gate. ``reduction="sum"``
    (the penalty of the paper) returns a scalar, ``"mean"`` the average, ``"none"`` per gate.

    Shapes:
        log_alpha: ``(*)``; output: ``()`` or ``(*)`` with ``reduction="none"``.
    """
    check_floating(log_alpha, "log_alpha")
    beta, gamma, zeta = _check_stretch(beta, gamma, zeta)
    p = torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))
    if reduction == "sum":
        return p.sum()
    if reduction == "mean":
        return p.mean()
    if reduction == "none":
        return p
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
