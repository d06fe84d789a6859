"""HiPPO transition matrices (Gu et al., 2020) used to initialise LSSL (Gu et al., 2021).

A HiPPO operator keeps the coefficients ``c(t) ∈ R^N`` of the projection of a signal's history
onto an orthogonal polynomial basis, and evolves them with a linear ODE

    LegT, LagT (time-invariant):   c'(t) = A c(t) + B f(t)
    LegS (scaled, time-varying):   c'(t) = (1/t) A c(t) + (1/t) B f(t)

- **LegS** (scaled Legendre, uniform measure on ``[0, t]``)::

      A_nk = -sqrt(2n+1) sqrt(2k+1)   (n > k),   -(n+1)  (n = k),   0  (n < k)
      B_n  =  sqrt(2n+1)

  and ``f(x) ≈ Σ_n c_n(t) sqrt(2n+1) P_n(2x/t − 1)`` on ``[0, t]``.
- **LegT** (translated Legendre, uniform measure on the window ``[t − θ, t]``)::

      A_nk = -(1/θ) sqrt(2n+1) sqrt(2k+1) · (1 if k < n else (−1)^(n−k)),   B_n = sqrt(2n+1)/θ

  with ``f(x) ≈ Σ_n c_n(t) sqrt(2n+1) P_n(2(x − t)/θ + 1)`` on the window.
- **LagT** (Laguerre, exponentially decaying measure ``β e^{−β(t−x)}`` on ``(−∞, t]``)::

      A = −β · tril(ones(N, N)),   B = β · ones(N)

  which is exact: ``c_n(t) = ∫ f(x) L_n(β(t−x)) β e^{−β(t−x)} dx``.
Functions return ``(A, B)`` with shapes ``(N, N)`` and ``(N,)`` in float64 by default.
:func:`legs_online` runs the LegS recurrence over a sequence (the online function approximation
property) and :func:`legendre_reconstruct` evaluates the approximation from coefficients.
"""

from __future__ import annotations

import torch

from torchloom.core.checks import check_floating, check_ndim, check_positive

__all__ = [
    "hippo",
    "lagt",
    "legendre_reconstruct",
    "legs",
    "legs_online",
    "legt",
]


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"state_dim must be an int >= 1, got {n!r}")
    return n


def legs(
    state_dim: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS ``(A, B)``: ``A`` ``(N, N)`` lower triangular, ``B`` ``(N,)``."""
    n = _check_n(state_dim)
    q = torch.arange(n, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    a = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(q + 1)
    return a.to(device=device, dtype=dtype), r.to(device=device, dtype=dtype)


def legt(
    state_dim: int,
    theta: float = 1.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegT ``(A, B)`` for a sliding window of length ``theta``."""
    n = _check_n(state_dim)
    th = check_positive(theta, "theta")
    q = torch.arange(n, dtype=torch.float64)
    r = torch.sqrt(2 * q + 1)
    row, col = q[:, None], q[None, :]
    sign = torch.where(col < row, torch.ones(()), (-1.0) ** (row - col))
    a = -(r[:, None] * sign * r[None, :]) / th
    return a.to(device=device, dtype=dtype), (r / th).to(device=device, dtype=dtype)


def lagt(
    state_dim: int,
    beta: float = 1.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LagT ``(A, B)`` for the measure ``β e^{−β(t−x)}``."""
    n = _check_n(state_dim)
    b = check_positive(beta, "beta")
    a = -b * torch.tril(torch.ones(n, n, dtype=torch.float64))
    return a.to(device=device, dtype=dtype), torch.full((n,), b, dtype=dtype, device=device)


def hippo(
    measure: str,
    state_dim: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` for ``measure`` in ``{"legs", "legt", "lagt"}`` with default scales."""
    table = {"legs": legs, "legt": legt, "lagt": lagt}
    if measure not in table:
        raise ValueError(f"measure must be one of {sorted(table)}, got {measure!r}")
    return table[measure](state_dim, dtype=dtype, device=device)


def legs_online(u: torch.Tensor, state_dim: int) -> torch.Tensor:
    """Run the discrete HiPPO-LegS recurrence over ``u`` and return every state.

    Step ``k = 1..L`` uses the bilinear discretisation of ``c' = (A c + B f)/t`` with
    ``A_k = A/k``: ``c_k = (I − A_k/2)^{-1} ((I + A_k/2) c_{k−1} + B/k · u_k)``, so that
    ``c_L`` holds the Legendre coefficients of the whole history ``u_1..u_L`` rescaled to
    ``[0, 1]`` (HiPPO, Sec. 3 and App. B).

    Shapes: ``u`` ``(..., L)`` → states ``(..., L, N)``.
    """
    check_floating(u, "u")
    if u.dim() < 1 or u.shape[-1] < 1:
        raise ValueError(f"u must have shape (..., L) with L >= 1, got {tuple(u.shape)}")
    a, b = legs(state_dim, dtype=u.dtype, device=u.device)
    eye = torch.eye(state_dim, dtype=u.dtype, device=u.device)
    c = u.new_zeros((*u.shape[:-1], state_dim))
    out = []
    for k in range(1, u.shape[-1] + 1):
        lhs = eye - a / (2 * k)
        # A is lower triangular, so a triangular solve replaces the inverse.
        da = torch.linalg.solve_triangular(lhs, eye + a / (2 * k), upper=False)
        db = torch.linalg.solve_triangular(lhs, (b / k)[:, None], upper=False)[:, 0]
        c = c @ da.T + u[..., k - 1 : k] * db
        out.append(c)
    return torch.stack(out, dim=-2)


def legendre_reconstruct(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate ``Σ_n c_n sqrt(2n+1) P_n(2x − 1)`` at relative positions ``x ∈ [0, 1]``.

    Shapes: ``c`` ``(..., N)``, ``x`` ``(P,)`` → ``(..., P)``.
    """
    check_floating(c, "c")
    check_ndim(x, "x", 1, "(P,)")
    n = c.shape[-1]
    z = (2 * x - 1).to(c.dtype)
    # three-term recurrence (n+1) P_{n+1} = (2n+1) z P_n − n P_{n−1}
    polys = [torch.ones_like(z), z]
    for k in range(1, n - 1):
        polys.append(((2 * k + 1) * z * polys[k] - k * polys[k - 1]) / (k + 1))
    p = torch.stack(polys[:n], 0)  # (N, P)
    scale = torch.sqrt(2 * torch.arange(n, dtype=c.dtype, device=c.device) + 1)
    return (c * scale) @ p
