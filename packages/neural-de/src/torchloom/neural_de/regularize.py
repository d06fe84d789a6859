"""Regularising the solver's internal heuristics (Pal, Ma, Shah & Rackauckas, ICML 2021).

An adaptive solver already computes, at every accepted step ``j`` of size ``h_j``, a local error
estimate ``E_j`` (the scaled RMS norm of ``h Σᵢ (bᵢ − b̂ᵢ) kᵢ``) and a stiffness estimate
``S_j = ‖k_s − k_{s−1}‖ / ‖g_s − g_{s−1}‖`` (for Tsit5/DOPRI5: ``‖k₇ − k₆‖ / ‖y_{n+1} − g₆‖``).
Pal et al. add them to the loss,

    R_E = Σ_j E_j · |h_j|,        R_S = Σ_j S_j,

and differentiate them with the discrete sensitivity (backprop through the solve, no
higher-order autodiff): dynamics that the solver finds easy — fewer, larger steps — are
preferred, which cuts the NFE at prediction time. :func:`odesolve` keeps ``E_j`` and ``S_j``
with their graph in :class:`~torchloom.neural_de.SolverStats` under ``sensitivity="autograd"``
or ``"checkpoint"``.

The baseline the paper compares against is RNODE (Finlay et al., 2020): the kinetic energy
``∫ ‖f‖² dt`` and the Jacobian Frobenius norm ``∫ ‖∂f/∂z‖²_F dt`` (Hutchinson estimate
``‖εᵀ ∂f/∂z‖²``, ``ε ~ N(0, I)``) integrated alongside the state — :class:`RNODEField`. It needs a
vector-Jacobian product inside the vector field, hence double backward in training.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_positive
from torchloom.core.func import vjp
from torchloom.neural_de.ode import SolverStats

__all__ = [
    "ExponentialDecay",
    "RNODEField",
    "error_regularizer",
    "solver_regularizer",
    "stiffness_regularizer",
]


def _check_stats(stats: object) -> SolverStats:
    if not isinstance(stats, SolverStats):
        raise TypeError(f"stats must be a SolverStats, got {type(stats).__name__}")
    return stats


def error_regularizer(stats: SolverStats) -> Tensor:
    """``R_E = Σ_j E_j·|h_j|`` over the accepted steps of one adaptive solve (a 0-dim tensor).

    Raises ``ValueError`` if the solve recorded no error estimates (fixed-step methods).
    """
    stats = _check_stats(stats)
    if not stats.error_estimates:
        raise ValueError(
            f"stats of method {stats.method!r} hold no error estimates; R_E needs an adaptive "
            "method (bosh3, dopri5, tsit5)"
        )
    terms = [e * abs(h) for e, h in zip(stats.error_estimates, stats.step_sizes)]
    return torch.stack(terms).sum()


def stiffness_regularizer(stats: SolverStats) -> Tensor:
    """``R_S = Σ_j S_j`` over the accepted steps of one solve (a 0-dim tensor)."""
    stats = _check_stats(stats)
    if not stats.stiffness_estimates:
        raise ValueError(
            f"stats of method {stats.method!r} hold no stiffness estimates; R_S needs a method "
            "with at least two stages"
        )
    return torch.stack(stats.stiffness_estimates).sum()


def solver_regularizer(
    stats: SolverStats, lambda_error: float = 0.0, lambda_stiffness: float = 0.0
) -> Tensor:
    """``λ_E·R_E + λ_S·R_S`` (terms with a zero weight are not computed)."""
    check_positive(lambda_error, "lambda_error", strict=False)
    check_positive(lambda_stiffness, "lambda_stiffness", strict=False)
    stats = _check_stats(stats)
    total: Tensor | None = None
    if lambda_error > 0:
        total = lambda_error * error_regularizer(stats)
    if lambda_stiffness > 0:
        rs = lambda_stiffness * stiffness_regularizer(stats)
        total = rs if total is None else total + rs
    if total is None:
        ref = stats.error_estimates or stats.stiffness_estimates
        return torch.zeros((), dtype=ref[0].dtype, device=ref[0].device) if ref else torch.zeros(())
    return total


class ExponentialDecay:
    """λ schedule ``λ_k = start · (end/start)^{min(k, steps)/steps}`` (geometric decay).

    Pal et al. decay the regularisation weight over training so early training is shaped towards
    cheap dynamics and late training fits the data. ``end=start`` gives a constant weight.
    """

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start = check_positive(start, "start")
        self.end = check_positive(end, "end")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        self.steps = steps

    def __call__(self, k: int) -> float:
        frac = min(max(k, 0), self.steps) / self.steps
        return self.start * math.exp(frac * math.log(self.end / self.start))


class RNODEField(nn.Module):
    """The RNODE augmented vector field (Finlay et al. 2020), the baseline of Pal et al.

    State ``z = [y, e_K, e_J]`` of shape ``(B, N + 2)`` where ``y`` is ``(B, N)``:
    ``ẏ = f(t, y)``, ``ė_K = ‖f(t, y)‖²``, ``ė_J = ‖εᵀ ∂f/∂y‖²`` (Hutchinson estimate of the
    Jacobian's squared Frobenius norm, per sample). Call :meth:`set_noise` with ``ε`` ``(B, N)``
    before each solve (a fresh draw per solve, as in the paper), then read the integrated
    regularisers with :meth:`split`.
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self._noise: Tensor | None = None

    def set_noise(self, noise: Tensor) -> None:
        self._noise = noise

    @staticmethod
    def augment(y0: Tensor) -> Tensor:
        """``(B, N) -> (B, N + 2)`` with zero regulariser channels."""
        if y0.dim() != 2:
            raise ValueError(f"y0 must have shape (B, N), got {tuple(y0.shape)}")
        return torch.cat([y0, y0.new_zeros(y0.shape[0], 2)], 1)

    @staticmethod
    def split(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(..., B, N + 2) -> (y, kinetic, jacobian_frobenius)``."""
        return z[..., :-2], z[..., -2], z[..., -1]

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if self._noise is None:
            raise RuntimeError("call set_noise(eps) with eps of shape (B, N) before solving")
        y = z[..., :-2]
        if self._noise.shape != y.shape:
            raise ValueError(
                f"noise has shape {tuple(self._noise.shape)} but the state y has shape "
                f"{tuple(y.shape)}"
            )
        # εᵀ ∂f/∂y through core.func.vjp (torch.func): differentiable w.r.t. the field's
        # parameters, which is the double backward RNODE pays for in training.
        dy, eps_jac = vjp(lambda y_: self.field(t, y_), y, self._noise)
        kinetic = dy.pow(2).sum(-1, keepdim=True)
        frob = cast(Tensor, eps_jac).pow(2).sum(-1, keepdim=True)
        return torch.cat([dy, kinetic, frob], -1)
