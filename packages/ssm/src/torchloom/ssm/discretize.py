"""Discretisation of the continuous-time state space ``x' = A x + B u`` with step ``dt``.

LSSL (Gu et al., 2021, Sec. 2.1) uses the generalised bilinear transform (GBT)::

    Ā = (I − α dt A)^{-1} (I + (1 − α) dt A),     B̄ = (I − α dt A)^{-1} dt B

with ``α = 0`` forward Euler, ``α = 1`` backward Euler and ``α = 1/2`` the bilinear (Tustin)
method, which the paper uses. Zero-order hold is ``Ā = exp(dt A)``, ``B̄ = ∫_0^dt exp(s A) ds B``,
computed from one matrix exponential of the block matrix ``[[A, B], [0, 0]] dt`` (so a singular
``A`` needs no inverse).

Shapes: ``A`` ``(..., N, N)``, ``B`` ``(..., N, M)`` or ``(..., N)``; ``dt`` a positive float or a
tensor of shape ``(...)`` that broadcasts against the batch dimensions of ``A``. Returns
``(Ā, B̄)`` with the shapes of ``(A, B)`` broadcast over ``dt``.
"""

from __future__ import annotations

import torch

from torchloom.core.checks import check_floating, check_positive

__all__ = [
    "backward_euler",
    "bilinear",
    "discretize",
    "forward_euler",
    "gbt",
    "zoh",
]

METHODS = ("forward_euler", "backward_euler", "bilinear", "gbt", "zoh")


def _prepare(
    a: torch.Tensor, b: torch.Tensor, dt: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    check_floating(a, "A")
    check_floating(b, "B")
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"A must have shape (..., N, N), got {tuple(a.shape)}")
    n = a.shape[-1]
    vector = b.dim() == a.dim() - 1
    if vector:
        b = b.unsqueeze(-1)
    if b.dim() != a.dim() or b.shape[-2] != n:
        raise ValueError(
            f"B must have shape (..., N) or (..., N, M) with N={n} matching A, got {tuple(b.shape)}"
        )
    if isinstance(dt, torch.Tensor):
        check_floating(dt, "dt")
        if bool((dt <= 0).any()) or not bool(torch.isfinite(dt).all()):
            raise ValueError("dt must be finite and > 0 everywhere")
        dtt = dt.to(a.dtype)[..., None, None]
    else:
        dtt = torch.tensor(check_positive(dt, "dt"), dtype=a.dtype, device=a.device)
    return a, b, dtt, vector


def _batch_shape(a: torch.Tensor, b: torch.Tensor, dtt: torch.Tensor) -> tuple[int, ...]:
    shapes = [tuple(a.shape[:-2]), tuple(b.shape[:-2]), tuple(dtt.shape[:-2])]
    try:
        return tuple(torch.Size(torch.broadcast_shapes(*shapes)))  # type: ignore[no-untyped-call]
    except RuntimeError as e:
        raise ValueError(f"batch shapes of A, B and dt do not broadcast: {shapes}") from e


def gbt(
    A: torch.Tensor, B: torch.Tensor, dt: float | torch.Tensor, alpha: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised bilinear transform with parameter ``alpha ∈ [0, 1]``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    a, b, dtt, vector = _prepare(A, B, dt)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    da = dtt * a
    lhs = eye - alpha * da
    rhs_a = eye + (1 - alpha) * da
    batch = _batch_shape(a, b, dtt)
    n = a.shape[-1]
    lhs, rhs_a = lhs.expand(*batch, n, n), rhs_a.expand(*batch, n, n)
    rhs_b = (dtt * b).expand(*batch, *b.shape[-2:])
    if alpha == 0:
        ad, bd = rhs_a, rhs_b
    else:
        sol = torch.linalg.solve(lhs, torch.cat([rhs_a, rhs_b], dim=-1))
        ad, bd = sol[..., : a.shape[-1]], sol[..., a.shape[-1] :]
    return ad, (bd.squeeze(-1) if vector else bd)


def forward_euler(
    A: torch.Tensor, B: torch.Tensor, dt: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Ā = I + dt A``, ``B̄ = dt B`` (GBT with ``α = 0``)."""
    return gbt(A, B, dt, 0.0)


def backward_euler(
    A: torch.Tensor, B: torch.Tensor, dt: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Ā = (I − dt A)^{-1}``, ``B̄ = (I − dt A)^{-1} dt B`` (GBT with ``α = 1``)."""
    return gbt(A, B, dt, 1.0)


def bilinear(
    A: torch.Tensor, B: torch.Tensor, dt: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tustin / bilinear transform (GBT with ``α = 1/2``), the LSSL default."""
    return gbt(A, B, dt, 0.5)


def zoh(
    A: torch.Tensor, B: torch.Tensor, dt: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: ``exp([[A, B], [0, 0]] dt) = [[Ā, B̄], [0, I]]``."""
    a, b, dtt, vector = _prepare(A, B, dt)
    n, m = a.shape[-1], b.shape[-1]
    batch = _batch_shape(a, b, dtt)
    top = torch.cat([a.expand(*batch, n, n), b.expand(*batch, n, m)], dim=-1)
    block = torch.cat([top, top.new_zeros(*batch, m, n + m)], dim=-2)
    e = torch.linalg.matrix_exp(block * dtt)
    ad, bd = e[..., :n, :n], e[..., :n, n:]
    return ad, (bd.squeeze(-1) if vector else bd)


def discretize(
    A: torch.Tensor,
    B: torch.Tensor,
    dt: float | torch.Tensor,
    method: str = "bilinear",
    alpha: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch on ``method`` in ``forward_euler``, ``backward_euler``, ``bilinear``, ``gbt``
    (uses ``alpha``) or ``zoh``."""
    if method == "forward_euler":
        return forward_euler(A, B, dt)
    if method == "backward_euler":
        return backward_euler(A, B, dt)
    if method == "bilinear":
        return bilinear(A, B, dt)
    if method == "gbt":
        return gbt(A, B, dt, alpha)
    if method == "zoh":
        return zoh(A, B, dt)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
