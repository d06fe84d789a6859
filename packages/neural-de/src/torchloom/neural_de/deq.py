"""Deep equilibrium layer (Bai, Kolter & Koltun 2019) on ``torchloom.core.implicit``.

A DEQ is the infinite-depth limit of a weight-tied network — equivalently the steady state of
the ODE ``ż = f_θ(z, x) − z`` (Kidger 2022, §2.4 relates the two): its output is the fixed point
``z* = f_θ(z*, x)``, found by a root/fixed-point solver without recording iterations, and
differentiated with the implicit function theorem,

    ∂L/∂θ = wᵀ ∂f/∂θ,   (I − ∂f/∂z)ᵀ w = ∂L/∂z*,

so memory does not grow with the number of solver iterations.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_positive
from torchloom.core.implicit import fixed_point

__all__ = ["DEQ", "DEQCell"]


class DEQCell(nn.Module):
    """``f(z, x) = tanh(W z + U x + b)`` with ``‖W‖₂ ≤ contraction`` (< 1 makes f a contraction).

    ``W`` is rescaled by ``contraction / max(σ_max(W), contraction)`` on every call, so the fixed
    point exists and is unique (Banach), which Picard/Anderson iteration rely on.

    Shapes: ``z`` ``(B, H)``, ``x`` ``(B, D)`` -> ``(B, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, contraction: float = 0.9) -> None:
        super().__init__()
        check_positive(contraction, "contraction")
        self.contraction = contraction
        self.weight = nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size**0.5)
        self.inp = nn.Linear(input_size, hidden_size)

    def recurrent_weight(self) -> Tensor:
        sigma = torch.linalg.matrix_norm(self.weight, ord=2)
        return self.weight * (self.contraction / torch.clamp(sigma, min=self.contraction))

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return torch.tanh(z @ self.recurrent_weight().T + self.inp(x))


class DEQ(nn.Module):
    """The fixed point ``z* = cell(z*, x)`` with implicit gradients.

    Args:
        cell: a module ``cell(z, x) -> z`` (e.g. :class:`DEQCell`).
        hidden_size: size of ``z``; the solve starts from ``z₀ = 0``.
        solver: ``"anderson"``, ``"broyden"`` or ``"picard"`` (``core.implicit.fixed_point``).
        tol, max_iter: solver tolerance (relative residual per sample) and iteration cap.

    Shapes: ``x`` ``(B, D)`` -> ``z*`` ``(B, hidden_size)``.
    """

    def __init__(
        self,
        cell: nn.Module,
        hidden_size: int,
        solver: Literal["anderson", "broyden", "picard"] = "anderson",
        tol: float = 1e-6,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        self.cell, self.hidden_size = cell, hidden_size
        self.solver, self.tol, self.max_iter = solver, check_positive(tol, "tol"), max_iter

    def forward(self, x: Tensor) -> Tensor:
        x = check_floating(x, "x")
        if x.dim() != 2:
            raise ValueError(f"x must have shape (B, D), got {tuple(x.shape)}")
        z0 = x.new_zeros(x.shape[0], self.hidden_size)
        z = fixed_point(
            lambda z_, x_: self.cell(z_, x_),
            z0,
            x,
            solver=self.solver,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        return z  # type: ignore[return-value]
