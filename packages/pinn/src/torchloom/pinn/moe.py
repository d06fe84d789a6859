"""Physics-informed hard constraints at scale with a mixture of experts (PI-HC-MoE).

A network outputs ``N`` basis functions ``φ_θ(x) ∈ R^N``; the solution is ``u(x) = φ_θ(x)ᵀ w``.
The weights are not trained: for given ``θ`` they solve the *hard constraint*, the
discretised PDE (and initial data) at constraint points, by nonlinear least squares,

.. code-block:: text

    w*(θ) = argmin_w ½ ‖F(w; Φ_θ)‖²          (Levenberg–Marquardt)

and ``θ`` is trained through ``w*`` with the implicit function theorem applied to the
optimality condition ``g(w, Φ) = J_Fᵀ F = 0``: ``∂w*/∂Φ = −(∂g/∂w)⁻¹ ∂g/∂Φ``. The domain is
split into ``K`` subdomains; each *expert* has its own weights and its own constraint, so the
``K`` solves are independent, small, and run batched (:func:`hard_constraint_solve` vmaps every
per-expert Jacobian and Hessian). One global hard constraint over the whole domain (``K = 1``)
must represent the whole solution with one set of weights; given the same total number of
weights (``K N`` basis functions) its solve costs ``O(M (KN)² + (KN)³)`` per iteration against
``O(M N² + K N³)`` for the experts.

Problems shipped here: 1D reaction–diffusion (Fisher–KPP) ``u_t − ν u_xx − ρ u (1 − u) = 0`` on
``[0, 2π) × [0, T]``, periodic in ``x``, with a classical spectral Strang-splitting reference
(:func:`reaction_diffusion_reference`), 1D viscous Burgers ``u_t + u u_x − ν u_xx = 0`` on
``[−1, 1] × [0, T]`` with Dirichlet ends, with the exact Cole–Hopf solution
(:func:`burgers_reference`), and PDEBench's 1D diffusion–sorption
``u_t = D / R(u) u_xx`` with a Freundlich retardation factor singular at ``u = 0``
(:class:`DiffusionSorption`, the paper's own 1D problem), Dirichlet at ``x = 0`` and a Cauchy
(Robin) outflow condition at ``x = 1``, with a finite-volume method-of-lines reference
integrated by BDF (:func:`diffusion_sorption_reference`).

As in the paper (and its reference code), one network emits the basis for all experts; each
expert's constraint holds the PDE at points of its own subdomain together with the *global*
initial and boundary conditions and a ridge term ``10⁻⁴ w``; the basis network is trained on
the PDE residual of the assembled solution at fresh points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive

__all__ = [
    "BatchedMLP",
    "Burgers",
    "DiffusionSorption",
    "HardConstraintMoE",
    "ReactionDiffusion",
    "boundary_misfit",
    "burgers_reference",
    "constraint_rows",
    "constraint_rows_jacobian",
    "diffusion_sorption_reference",
    "grid_derivatives",
    "hard_constraint_solve",
    "levenberg_marquardt",
    "reaction_diffusion_reference",
    "relative_l2",
]

Residual = Callable[..., torch.Tensor]


def _per_expert(F: Residual, n_aux: int) -> Callable[..., torch.Tensor]:
    def single(w: torch.Tensor, *aux: torch.Tensor) -> torch.Tensor:
        return F(w.unsqueeze(0), *(a.unsqueeze(0) for a in aux)).squeeze(0)

    return single


def levenberg_marquardt(
    F: Residual,
    w0: torch.Tensor,
    *aux: torch.Tensor,
    max_iter: int = 20,
    tol: float = 1e-10,
    damping: float = 1e-3,
    jac: Residual | None = None,
) -> torch.Tensor:
    """Batched Levenberg–Marquardt for ``K`` independent least-squares problems.

    Minimises ``½ ‖F(w)_k‖²`` for every ``k`` with its own damping ``μ_k`` (divided by 3 after
    a successful step, doubled after a rejected one). Runs without a graph.

    Args:
        F: residual ``F(w, *aux) → (K, R)``; row ``k`` may depend only on ``w[k]`` and
            ``aux[i][k]``.
        w0: initial weights ``(K, N)``.
        *aux: tensors with leading dimension ``K`` (basis values, targets, …).
        max_iter: maximum number of iterations.
        tol: stop when every expert's gradient norm ``‖J_kᵀ F_k‖`` is below ``tol``.
        damping: initial ``μ``.
        jac: optional analytic Jacobian ``jac(w, *aux) → (K, R, N)`` (default: forward-mode
            autodiff of ``F``, vmapped over experts).

    Returns:
        ``w`` of shape ``(K, N)``.
    """
    check_int(max_iter, "max_iter")
    if jac is None:
        jac = torch.func.vmap(torch.func.jacfwd(_per_expert(F, len(aux)), argnums=0))
    with torch.no_grad():
        w = w0.detach().clone()
        aux_d = tuple(a.detach() for a in aux)
        K, N = w.shape
        mu = torch.full((K,), damping, dtype=w.dtype, device=w.device)
        eye = torch.eye(N, dtype=w.dtype, device=w.device)
        r = F(w, *aux_d)
        cost = 0.5 * (r**2).sum(-1)
        for _ in range(max_iter):
            J = jac(w, *aux_d)  # (K, R, N)
            g = torch.einsum("krn,kr->kn", J, r)
            if float(g.norm(dim=-1).max()) < tol:
                break
            A = J.transpose(1, 2) @ J
            diag = torch.diagonal(A, dim1=1, dim2=2).clamp_min(1e-12)
            A_damped = A + mu[:, None, None] * (torch.diag_embed(diag) + 1e-12 * eye)
            step = torch.linalg.solve(A_damped, -g.unsqueeze(-1)).squeeze(-1)
            w_new = w + step
            r_new = F(w_new, *aux_d)
            cost_new = 0.5 * (r_new**2).sum(-1)
            ok = cost_new <= cost
            w = torch.where(ok[:, None], w_new, w)
            r = torch.where(ok[:, None], r_new, r)
            cost = torch.where(ok, cost_new, cost)
            mu = torch.where(ok, mu / 3.0, mu * 2.0).clamp(1e-12, 1e12)
    return w


class _ConstraintSolve(torch.autograd.Function):
    @staticmethod
    def forward(
        F: Residual, w0: torch.Tensor, opts: dict[str, Any], *aux: torch.Tensor
    ) -> torch.Tensor:
        lm = {k: v for k, v in opts.items() if k != "hessian"}
        return levenberg_marquardt(F, w0, *aux, **lm)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        F, _, opts, *aux = inputs
        ctx.F = F
        ctx.jac = opts["jac"]
        ctx.hessian = opts["hessian"]
        ctx.save_for_backward(output, *aux)

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> tuple[Any, ...]:
        w, *aux = ctx.saved_tensors
        with torch.enable_grad():
            wanted = ctx.needs_input_grad[3:]
            aux_in = [a.detach().requires_grad_(bool(n)) for a, n in zip(aux, wanted)]
            wv = w.detach().requires_grad_(True)
            r = ctx.F(wv, *aux_in)
            # g = J_Fᵀ F per expert (zero at the optimum), kept differentiable
            (g,) = torch.autograd.grad(0.5 * (r**2).sum(), wv, create_graph=True)
            if ctx.hessian == "gauss_newton":  # J_FᵀJ_F: positive semi-definite
                with torch.no_grad():
                    if ctx.jac is not None:
                        J = ctx.jac(w, *(a.detach() for a in aux))
                    else:
                        single = _per_expert(ctx.F, len(aux))
                        J = torch.func.vmap(torch.func.jacfwd(single))(w, *aux)
                    H = J.transpose(1, 2) @ J
            else:
                rows = []
                for i in range(g.shape[1]):  # exact ∂g/∂w, one row of every expert per pass
                    (h,) = torch.autograd.grad(
                        g[:, i].sum(), wv, retain_graph=True, allow_unused=True
                    )
                    rows.append(torch.zeros_like(wv) if h is None else h)
                H = torch.stack(rows, 1)  # (K, N, N)
            lam = -torch.linalg.solve(H.transpose(1, 2), v.unsqueeze(-1)).squeeze(-1)
            need = [a for a in aux_in if a.requires_grad]
            grads: list[torch.Tensor | None] = [None] * len(aux)
            if need:
                got = torch.autograd.grad(g, need, lam, allow_unused=True)
                it = iter(got)
                grads = [next(it) if a.requires_grad else None for a in aux_in]
        return (None, None, None, *grads)


def hard_constraint_solve(
    F: Residual,
    w0: torch.Tensor,
    *aux: torch.Tensor,
    max_iter: int = 20,
    tol: float = 1e-10,
    damping: float = 1e-3,
    jac: Residual | None = None,
    hessian: Literal["exact", "gauss_newton"] = "exact",
) -> torch.Tensor:
    """Differentiable per-expert constraint solve ``w* = argmin_w ½ ‖F(w, *aux)‖²``.

    Forward: :func:`levenberg_marquardt`, batched over experts. Backward: the implicit
    function theorem on ``g = J_Fᵀ F = 0`` per expert, with the exact Hessian
    ``∂g/∂w = J_FᵀJ_F + Σ_i F_i ∇²F_i`` (double backward, ``N`` passes for all experts at
    once, then ``K`` small ``N × N`` solves): for an incoming
    gradient ``v``, ``λ = −(∂g/∂w)⁻ᵀ v`` and ``∂L/∂aux = λᵀ ∂g/∂aux``. No gradient flows to
    ``w0``.

    Args:
        F: residual ``F(w, *aux) → (K, R)``, expert ``k`` depending on ``w[k]``, ``aux[·][k]``.
        w0: initial guess ``(K, N)``.
        *aux: tensors with leading dimension ``K``; gradients flow to those that require it.
        max_iter: Levenberg–Marquardt iterations.
        tol: gradient-norm tolerance.
        damping: initial damping.
        jac: optional analytic Jacobian of ``F`` for the forward solve (see
            :func:`levenberg_marquardt`); the backward pass always differentiates ``F``.
        hessian: ``"exact"`` (``J_FᵀJ_F + Σ_i F_i ∇²F_i``: the true implicit derivative) or
            ``"gauss_newton"`` (``J_FᵀJ_F`` only: positive semi-definite, the usual choice of
            least-squares layers; exact when the residual vanishes at the optimum).

    Returns:
        ``w*`` of shape ``(K, N)``.
    """
    check_floating(w0, "w0")
    if w0.dim() != 2:
        raise ValueError(f"w0 must have shape (K, N), got {tuple(w0.shape)}")
    for i, a in enumerate(aux):
        if a.shape[0] != w0.shape[0]:
            raise ValueError(
                f"aux[{i}] must have leading dimension K = {w0.shape[0]}, got {tuple(a.shape)}"
            )
    if hessian not in ("exact", "gauss_newton"):
        raise ValueError(f"hessian must be 'exact' or 'gauss_newton', got {hessian!r}")
    opts = {"max_iter": max_iter, "tol": tol, "damping": damping, "jac": jac, "hessian": hessian}
    out: torch.Tensor = _ConstraintSolve.apply(F, w0, opts, *aux)
    return out


class BatchedMLP(nn.Module):
    """``K`` independent ``tanh`` MLPs evaluated in one batched pass, with input derivatives.

    Derivatives with respect to the inputs are propagated forward alongside the values
    (Taylor mode: ``a = tanh(z)``, ``a' = (1 − a²) z'``, ``a'' = (1 − a²) z'' − 2 a (1 − a²) z'²``),
    so first and pure second derivatives of all ``d_out`` outputs cost a few extra matmuls.

    Args:
        n_experts: ``K``.
        d_in: input dimension ``D``.
        d_out: output dimension (number of basis functions ``N``).
        width: hidden width.
        depth: hidden layers.

    Shapes:
        x: ``(K, P, D)`` → values ``(K, P, N)``; first and pure second derivatives
        ``(K, P, N, D)``.
    """

    def __init__(
        self, n_experts: int, d_in: int, d_out: int, width: int = 32, depth: int = 2
    ) -> None:
        super().__init__()
        for name, v in (("n_experts", n_experts), ("d_in", d_in), ("d_out", d_out)):
            check_int(v, name)
        dims = [d_in] + [width] * depth + [d_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(dims):
            w = torch.randn(n_experts, a, b) * math.sqrt(2.0 / (a + b))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(n_experts, 1, b)))
        self.n_experts = n_experts

    def forward(
        self, x: torch.Tensor, derivatives: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Values and (optionally) input derivatives of every expert's outputs.

        Args:
            x: points ``(K, P, D)``; expert ``k`` is evaluated at ``x[k]``.
            derivatives: also return first and pure second derivatives.

        Returns:
            ``(u, du, d2u)``: ``(K, P, N)``, ``(K, P, N, D)``, ``(K, P, N, D)`` (``None``
            without ``derivatives``).
        """
        check_floating(x, "x")
        if x.dim() != 3 or x.shape[0] != self.n_experts:
            raise ValueError(f"x must have shape (K={self.n_experts}, P, D), got {tuple(x.shape)}")
        K, P, D = x.shape
        h = x
        dh = d2h = None
        if derivatives:
            eye = torch.eye(D, dtype=x.dtype, device=x.device)
            dh = eye.expand(K, P, D, D)  # (K, P, width_in, D): ∂h_j/∂x_d
            d2h = torch.zeros_like(dh)
        n = len(self.weights)
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = torch.bmm(h, W) + b
            dz = torch.einsum("kpjd,kjo->kpod", dh, W) if dh is not None else None
            d2z = torch.einsum("kpjd,kjo->kpod", d2h, W) if d2h is not None else None
            if i == n - 1:
                return z, dz, d2z
            a = torch.tanh(z)
            s = 1.0 - a**2
            if dz is not None and d2z is not None:
                dh = s.unsqueeze(-1) * dz
                d2h = s.unsqueeze(-1) * d2z - 2.0 * (a * s).unsqueeze(-1) * dz**2
            h = a
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class ReactionDiffusion:
    """1D reaction–diffusion ``u_t − ν u_xx − ρ u (1 − u) = 0`` on ``[0, 2π) × [0, t_end]``.

    Periodic in ``x``; initial condition ``u(x, 0) = exp(−(x − π)² / (2 (π/4)²))``.

    Attributes:
        nu: diffusion coefficient ``ν``.
        rho: reaction rate ``ρ``.
        t_end: final time.
    """

    nu: float = 1.0
    rho: float = 5.0
    t_end: float = 1.0
    boundary: ClassVar[str] = "periodic"

    def __post_init__(self) -> None:
        check_positive(self.nu, "nu")
        check_positive(self.rho, "rho", strict=False)
        check_positive(self.t_end, "t_end")

    @property
    def lower(self) -> tuple[float, float]:
        """Lower corner ``(x, t)``."""
        return (0.0, 0.0)

    @property
    def upper(self) -> tuple[float, float]:
        """Upper corner ``(x, t)``."""
        return (2.0 * math.pi, self.t_end)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """Initial condition ``u(x, 0)``.

        Args:
            x: positions, any shape.

        Returns:
            ``u(x, 0)``, same shape as ``x``.
        """
        return torch.exp(-((x - math.pi) ** 2) / (2.0 * (math.pi / 4.0) ** 2))

    def residual(self, u: torch.Tensor, u_t: torch.Tensor, u_xx: torch.Tensor) -> torch.Tensor:
        """PDE residual ``u_t − ν u_xx − ρ u (1 − u)``.

        Args:
            u: solution values, any shape.
            u_t: time derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            The residual, element-wise.
        """
        return u_t - self.nu * u_xx - self.rho * u * (1.0 - u)

    def pde(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> torch.Tensor:
        """The residual in the common signature of the problems here (``u_x`` unused).

        Args:
            u: values, any shape.
            u_t: time derivative, same shape.
            u_x: space derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            ``u_t − ν u_xx − ρ u (1 − u)``, element-wise.
        """
        return self.residual(u, u_t, u_xx)

    def pde_partials(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Partial derivatives of :meth:`pde` with respect to ``(u, u_t, u_x, u_xx)``.

        Args:
            u: values, any shape.
            u_t: time derivative, same shape.
            u_x: space derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            Four tensors shaped like ``u``: ``−ρ (1 − 2u)``, ``1``, ``0``, ``−ν``.
        """
        one = torch.ones_like(u)
        return -self.rho * (1.0 - 2.0 * u), one, torch.zeros_like(u), -self.nu * one

    def boundary_value(self, t: torch.Tensor) -> torch.Tensor:
        """Unused for a periodic problem (zeros, kept for the common interface).

        Args:
            t: times ``(B,)``.

        Returns:
            Zeros ``(B,)``.
        """
        return torch.zeros_like(t)


@dataclass(frozen=True)
class Burgers:
    """1D viscous Burgers ``u_t + u u_x − ν u_xx = 0`` on ``[−1, 1] × [0, t_end]``.

    ``u(x, 0) = −sin(π x)`` and ``u(±1, t) = 0`` (the classic PINN benchmark; ``ν = 0.01/π``
    forms a near-shock at ``x = 0``).

    Attributes:
        nu: viscosity ``ν``.
        t_end: final time.
    """

    nu: float = 0.01 / math.pi
    t_end: float = 1.0
    boundary: ClassVar[str] = "dirichlet"

    def __post_init__(self) -> None:
        check_positive(self.nu, "nu")
        check_positive(self.t_end, "t_end")

    @property
    def lower(self) -> tuple[float, float]:
        """Lower corner ``(x, t)``."""
        return (-1.0, 0.0)

    @property
    def upper(self) -> tuple[float, float]:
        """Upper corner ``(x, t)``."""
        return (1.0, self.t_end)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """Initial condition ``−sin(π x)``.

        Args:
            x: positions, any shape.

        Returns:
            ``u(x, 0)``, same shape.
        """
        return -torch.sin(math.pi * x)

    def pde(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> torch.Tensor:
        """PDE residual ``u_t + u u_x − ν u_xx``.

        Args:
            u: values, any shape.
            u_t: time derivative, same shape.
            u_x: space derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            The residual, element-wise.
        """
        return u_t + u * u_x - self.nu * u_xx

    def pde_partials(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Partial derivatives of :meth:`pde` with respect to ``(u, u_t, u_x, u_xx)``.

        Args:
            u: values, any shape.
            u_t: time derivative, same shape.
            u_x: space derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            Four tensors shaped like ``u``: ``u_x``, ``1``, ``u``, ``−ν``.
        """
        one = torch.ones_like(u)
        return u_x, one, u, -self.nu * one

    def boundary_value(self, t: torch.Tensor) -> torch.Tensor:
        """Dirichlet value at both ends, ``0``.

        Args:
            t: times ``(B,)``.

        Returns:
            Zeros ``(B,)``.
        """
        return torch.zeros_like(t)


@dataclass(frozen=True)
class DiffusionSorption:
    """1D diffusion–sorption (PDEBench) ``u_t = D / R(u) · u_xx`` on ``[0, 1] × [0, t_final]``.

    Freundlich retardation ``R(u) = 1 + ((1 − φ)/φ) ρ_s k_f n_f (u + ε)^(n_f − 1)``, singular at
    ``u = 0`` because ``n_f < 1``; exactly as PDEBench's generator and the PI-HC-MoE authors'
    residual, ``ε = 10⁻⁶`` and ``R`` is frozen at ``u ≤ 0`` (``(u + ε)^(n_f − 1)`` replaced by
    ``ε^(n_f − 1)``, continuous at 0, with ``R' = 0`` there). Initial condition ``u(x, 0) = u₀``
    (PDEBench draws the constant from ``U(0, 0.2)``); boundary ``u(0, t) = u_left`` (the
    solubility, 1) and the Cauchy outflow condition at ``x = 1``. PDEBench writes the latter as
    ``u = D u_x``; its generator sets the ghost cell to ``D (c_{N−2} − c_{N−1}) / Δx ≈ −D u_x``,
    i.e. ``u + D u_x = 0``, the sign that keeps the problem well posed (with ``u − D u_x = 0`` the
    boundary mode ``exp((x − 1)/D)`` grows at the rate ``1/(R D)``); we use ``u + D u_x = 0``
    (the two differ by ``O(D)`` in ``u``).

    *Time is rescaled*: the problem's coordinates are ``(x, τ)`` with ``τ = t / t_final ∈
    [0, 1]``, and the residual is ``u_τ − t_final D / R(u) · u_xx`` (so ``t_end = 1``). With the
    physical ``t ∈ [0, 500]`` the PDE rows are ``≈ 1/500`` of the initial/boundary rows, and the
    network sees ``t`` through a ``1/500`` chain-rule factor.

    Attributes:
        D: diffusion coefficient.
        porosity: ``φ``.
        rho_s: dry bulk density ``ρ_s``.
        k_f: Freundlich parameter.
        n_f: Freundlich exponent (``< 1``).
        u0: constant initial concentration.
        u_left: concentration at ``x = 0`` (solubility).
        t_final: physical final time (the problem's ``τ = 1``).
    """

    D: float = 5e-4
    porosity: float = 0.29
    rho_s: float = 2880.0
    k_f: float = 3.5e-4
    n_f: float = 0.874
    u0: float = 0.1
    u_left: float = 1.0
    t_final: float = 500.0
    boundary: ClassVar[str] = "robin"
    eps: ClassVar[float] = 1e-6

    def __post_init__(self) -> None:
        check_positive(self.D, "D")
        if not 0.0 < self.porosity < 1.0:
            raise ValueError(f"porosity must be in (0, 1), got {self.porosity}")
        check_positive(self.rho_s, "rho_s")
        check_positive(self.k_f, "k_f", strict=False)
        check_positive(self.n_f, "n_f")
        check_positive(self.u0, "u0", strict=False)
        check_positive(self.t_final, "t_final")

    @property
    def t_end(self) -> float:
        """End of the rescaled time ``τ`` (always 1)."""
        return 1.0

    @property
    def lower(self) -> tuple[float, float]:
        """Lower corner ``(x, τ)``."""
        return (0.0, 0.0)

    @property
    def upper(self) -> tuple[float, float]:
        """Upper corner ``(x, τ)``."""
        return (1.0, 1.0)

    @property
    def sorption(self) -> float:
        """``c = ((1 − φ)/φ) ρ_s k_f n_f``, so ``R(u) = 1 + c (u + ε)^(n_f − 1)``."""
        return (1.0 - self.porosity) / self.porosity * self.rho_s * self.k_f * self.n_f

    def retardation(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R(u)`` and ``R'(u)`` (frozen at ``u ≤ 0``, as PDEBench and the authors do).

        Args:
            u: values, any shape.

        Returns:
            ``(R, dR/du)``, each shaped like ``u``.
        """
        pos = u > 0
        safe = torch.where(pos, u, torch.zeros_like(u)) + self.eps
        p = self.n_f - 1.0
        powr = torch.where(pos, safe**p, torch.full_like(u, self.eps**p))
        dpow = torch.where(pos, p * safe ** (p - 1.0), torch.zeros_like(u))
        return 1.0 + self.sorption * powr, self.sorption * dpow

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """Initial condition ``u₀`` (constant).

        Args:
            x: positions, any shape.

        Returns:
            ``u(x, 0)``, same shape.
        """
        return torch.full_like(x, self.u0)

    def pde(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> torch.Tensor:
        """Residual in rescaled time, ``u_τ − t_final D / R(u) · u_xx``.

        Args:
            u: values, any shape.
            u_t: derivative in ``τ``, same shape.
            u_x: space derivative (unused), same shape.
            u_xx: second space derivative, same shape.

        Returns:
            The residual, element-wise.
        """
        R, _ = self.retardation(u)
        return u_t - self.t_final * self.D / R * u_xx

    def pde_partials(
        self, u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Partial derivatives of :meth:`pde` with respect to ``(u, u_t, u_x, u_xx)``.

        Args:
            u: values, any shape.
            u_t: time derivative, same shape.
            u_x: space derivative, same shape.
            u_xx: second space derivative, same shape.

        Returns:
            ``s D R'(u) / R² · u_xx``, ``1``, ``0``, ``−s D / R`` with ``s = t_final``.
        """
        R, dR = self.retardation(u)
        sD = self.t_final * self.D
        return sD * dR / R**2 * u_xx, torch.ones_like(u), torch.zeros_like(u), -sD / R

    def robin(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Boundary operators ``a u + b u_x`` at ``x = 0`` and ``x = 1``.

        Returns:
            ``((a_left, b_left), (a_right, b_right))`` = ``((1, 0), (1, D))``.
        """
        return (1.0, 0.0), (1.0, self.D)

    def boundary_value(self, t: torch.Tensor) -> torch.Tensor:
        """Right-hand sides of the left and right boundary rows, concatenated.

        Args:
            t: times ``(B,)``.

        Returns:
            ``(2B,)``: ``u_left`` at the ``B`` left times, then ``0`` at the right.
        """
        return torch.cat([torch.full_like(t, self.u_left), torch.zeros_like(t)])


Problem = ReactionDiffusion | Burgers | DiffusionSorption


def diffusion_sorption_reference(
    problem: DiffusionSorption,
    nx: int = 256,
    t: np.ndarray | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classical reference: finite volumes in ``x`` (method of lines) + implicit BDF in time.

    PDEBench's discretisation: ``nx`` cells with centres ``x_i = (i + ½) Δx``,
    ``dc_i/dt = D / R(c_i) · (c_{i−1} − 2 c_i + c_{i+1}) / Δx²``, with ghost cells for the
    boundaries (second order here: ``c_{−1} = 2 u_left − c_0`` for the Dirichlet face at 0;
    ``(c_{N−1} + c_N)/2 + D (c_N − c_{N−1})/Δx = 0`` for the Cauchy face at 1). The stiff system
    is integrated by :func:`scipy.integrate.solve_ivp` (``BDF``) with its analytic tridiagonal
    Jacobian.

    Args:
        problem: the problem.
        nx: number of cells.
        t: output times in *physical* units ``(nt,)`` (default ``linspace(0, t_final, 21)``).
        rtol: relative tolerance of the integrator.
        atol: absolute tolerance.

    Returns:
        ``(x, t, u)``: cell centres ``(nx,)``, times ``(nt,)``, ``u`` of shape ``(nt, nx)``.
    """
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    check_int(nx, "nx", minimum=2)
    t_out = np.linspace(0.0, problem.t_final, 21) if t is None else np.asarray(t, np.float64)
    if t_out.ndim != 1 or (t_out < 0).any() or (t_out > problem.t_final).any():
        raise ValueError(f"t must be 1D times in [0, t_final = {problem.t_final}]")
    dx = 1.0 / nx
    x = (np.arange(nx) + 0.5) * dx
    D, c, p, eps = problem.D, problem.sorption, problem.n_f - 1.0, problem.eps
    rr = (D / dx - 0.5) / (D / dx + 0.5)  # c_N = rr · c_{N−1}

    def retard(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = u > 0
        safe = np.where(pos, u, 0.0) + eps
        return (
            1.0 + c * np.where(pos, safe**p, eps**p),
            c * np.where(pos, p * safe ** (p - 1.0), 0.0),
        )

    def lap(u: np.ndarray) -> np.ndarray:
        ext = np.concatenate([[2.0 * problem.u_left - u[0]], u, [rr * u[-1]]])
        out: np.ndarray = (ext[:-2] - 2.0 * ext[1:-1] + ext[2:]) / dx**2
        return out

    def rhs(_: float, u: np.ndarray) -> np.ndarray:
        R, _dR = retard(u)
        out: np.ndarray = D / R * lap(u)
        return out

    main = np.full(nx, -2.0 / dx**2)
    main[0] = -3.0 / dx**2
    main[-1] = (rr - 2.0) / dx**2
    off = np.full(nx - 1, 1.0 / dx**2)

    def jac(_: float, u: np.ndarray) -> Any:
        R, dR = retard(u)
        L = lap(u)
        d = D / R
        return diags(
            [d[1:] * off, d * main - D * dR / R**2 * L, d[:-1] * off], [-1, 0, 1], format="csc"
        )

    sol = solve_ivp(
        rhs,
        (0.0, problem.t_final),
        np.full(nx, problem.u0),
        method="BDF",
        t_eval=t_out,
        jac=jac,
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:  # pragma: no cover - scipy failure
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return x, t_out, sol.y.T.copy()


def reaction_diffusion_reference(
    problem: ReactionDiffusion, nx: int = 256, nt: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classical reference: Fourier spectral diffusion + exact logistic reaction, Strang-split.

    Args:
        problem: the problem.
        nx: grid points in ``x`` (periodic, ``x_j = 2π j / nx``).
        nt: time steps.

    Returns:
        ``(x, t, u)`` with ``x`` ``(nx,)``, ``t`` ``(nt + 1,)``, ``u`` ``(nt + 1, nx)``.
    """
    check_int(nx, "nx", minimum=4)
    check_int(nt, "nt")
    x = 2 * np.pi * np.arange(nx) / nx
    t = np.linspace(0.0, problem.t_end, nt + 1)
    dt = problem.t_end / nt
    k = np.fft.fftfreq(nx, d=1.0 / nx)
    decay = np.exp(-problem.nu * k**2 * dt / 2)
    e = np.exp(problem.rho * dt)
    u = np.exp(-((x - np.pi) ** 2) / (2 * (np.pi / 4) ** 2))
    out = [u]
    for _ in range(nt):
        u = np.real(np.fft.ifft(np.fft.fft(u) * decay))
        u = u * e / (1 - u + u * e)
        u = np.real(np.fft.ifft(np.fft.fft(u) * decay))
        out.append(u)
    return x, t, np.stack(out)


def burgers_reference(
    problem: Burgers, x: np.ndarray, t: np.ndarray, n_quad: int = 250
) -> np.ndarray:
    """Exact solution of :class:`Burgers` by the Cole–Hopf transform (Gauss–Hermite quadrature).

    ``u(x, t) = −∫ sin(π(x − η)) f(x − η) G(η) dη / ∫ f(x − η) G(η) dη`` with
    ``f(y) = exp(−cos(π y) / (2πν))`` and the heat kernel ``G(η) = exp(−η² / (4νt))``;
    substituting ``η = √(4νt) z`` leaves Gauss–Hermite integrals. Exponents are shifted by
    their maximum per point, so small ``ν`` does not overflow.

    Args:
        problem: the Burgers problem (its ``ν``).
        x: positions ``(nx,)`` in ``[−1, 1]``.
        t: times ``(nt,)`` ``≥ 0``.
        n_quad: Gauss–Hermite nodes.

    Returns:
        ``u`` of shape ``(nt, nx)``.
    """
    check_int(n_quad, "n_quad", minimum=2)
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if (t < 0).any():
        raise ValueError(f"t must be >= 0, got min {t.min()}")
    z, wq = np.polynomial.hermite.hermgauss(n_quad)
    nu = problem.nu
    out = np.empty((t.size, x.size))
    for i, ti in enumerate(t):
        if ti == 0.0:
            out[i] = -np.sin(np.pi * x)
            continue
        y = x[:, None] - math.sqrt(4.0 * nu * ti) * z[None, :]  # (nx, n_quad)
        e = -np.cos(np.pi * y) / (2.0 * np.pi * nu)
        f = wq[None, :] * np.exp(e - e.max(axis=1, keepdims=True))
        out[i] = -(np.sin(np.pi * y) * f).sum(1) / f.sum(1)
    return out


def _fd_first(u: torch.Tensor, h: float, dim: int, periodic: bool) -> torch.Tensor:
    """Second-order first derivative along ``dim``: central inside, one-sided 3-point at ends."""
    if periodic:
        return (u.roll(-1, dim) - u.roll(1, dim)) / (2.0 * h)
    n = u.shape[dim]

    def s(i: int, m: int = 1) -> torch.Tensor:
        return u.narrow(dim, i % n, m)

    mid = (u.narrow(dim, 2, n - 2) - u.narrow(dim, 0, n - 2)) / (2.0 * h)
    lo = (-3.0 * s(0) + 4.0 * s(1) - s(2)) / (2.0 * h)
    hi = (3.0 * s(-1) - 4.0 * s(-2) + s(-3)) / (2.0 * h)
    return torch.cat([lo, mid, hi], dim)


def _fd_second(u: torch.Tensor, h: float, dim: int, periodic: bool) -> torch.Tensor:
    """Second-order second derivative along ``dim``: compact 3-point inside, 4-point at ends."""
    if periodic:
        return (u.roll(-1, dim) - 2.0 * u + u.roll(1, dim)) / h**2
    n = u.shape[dim]

    def s(i: int) -> torch.Tensor:
        return u.narrow(dim, i % n, 1)

    mid = (u.narrow(dim, 2, n - 2) - 2.0 * u.narrow(dim, 1, n - 2) + u.narrow(dim, 0, n - 2)) / h**2
    lo = (2.0 * s(0) - 5.0 * s(1) + 4.0 * s(2) - s(3)) / h**2
    hi = (2.0 * s(-1) - 5.0 * s(-2) + 4.0 * s(-3) - s(-4)) / h**2
    return torch.cat([lo, mid, hi], dim)


def grid_derivatives(
    u: torch.Tensor, dx: float, dt: float, periodic: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Finite-difference ``u_t``, ``u_x``, ``u_xx`` of a field on a regular ``(t, x)`` grid.

    Second order everywhere: central differences inside (the compact ``(u_{i+1} − 2u_i +
    u_{i−1}) / h²`` for ``u_xx``), one-sided 3-point (first) and 4-point (second derivative)
    stencils on the first and last rows/columns; with ``periodic`` the ``x`` stencils wrap
    around (the grid then excludes the right end, ``x_j = x₀ + j dx``).

    Args:
        u: field ``(nt, nx)``, rows are times, columns positions (``nt ≥ 3``, ``nx ≥ 4``).
        dx: spacing in ``x``.
        dt: spacing in ``t``.
        periodic: wrap the ``x`` stencils.

    Returns:
        ``(u_t, u_x, u_xx)``, each ``(nt, nx)``.
    """
    check_floating(u, "u")
    if u.dim() != 2 or u.shape[0] < 3 or u.shape[1] < 4:
        raise ValueError(f"u must have shape (nt >= 3, nx >= 4), got {tuple(u.shape)}")
    check_positive(dx, "dx")
    check_positive(dt, "dt")
    return (
        _fd_first(u, dt, 0, False),
        _fd_first(u, dx, 1, periodic),
        _fd_second(u, dx, 1, periodic),
    )


def _boundary_residuals(
    problem: Problem,
    ul: torch.Tensor,
    uxl: torch.Tensor,
    ur: torch.Tensor,
    uxr: torch.Tensor,
    g_bc: torch.Tensor,
    dim: int = -1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right boundary residuals of the fields at the two ends.

    Periodic: ``u`` and ``u_x`` match across the ends (``g_bc`` unused); Dirichlet: ``u = g``;
    Robin: ``a u + b u_x = g`` at each end (``problem.robin()``). ``g_bc`` holds, along
    ``dim``, either the ``B`` values of both ends or ``2B`` (left, then right), or is a number.
    With basis tensors ``(E, B, N)`` in place of the fields and ``g_bc = 0`` the same formula
    gives the Jacobian blocks.
    """
    if problem.boundary == "periodic":
        return ul - ur, uxl - uxr
    n = ul.shape[dim]
    if g_bc.dim() > 0 and g_bc.shape[dim] == 2 * n:
        g_l, g_r = g_bc.narrow(dim, 0, n), g_bc.narrow(dim, n, n)
    else:
        g_l = g_r = g_bc
    if problem.boundary == "robin":
        if not isinstance(problem, DiffusionSorption):  # pragma: no cover
            raise TypeError(f"{type(problem).__name__} has no Robin boundary")
        (al, bl), (ar, br) = problem.robin()
        return al * ul + bl * uxl - g_l, ar * ur + br * uxr - g_r
    return ul - g_l, ur - g_r


def boundary_misfit(
    problem: Problem,
    ul: torch.Tensor,
    uxl: torch.Tensor,
    ur: torch.Tensor,
    uxr: torch.Tensor,
    g_bc: torch.Tensor,
) -> torch.Tensor:
    """Mean-square boundary misfit of a solution: the two ends' mean squares, summed.

    Args:
        problem: the PDE (its ``boundary`` kind; ``robin()`` for Robin ends).
        ul: ``u`` at the left end, ``(..., T)`` (``T`` boundary times last).
        uxl: ``u_x`` at the left end, same shape.
        ur: ``u`` at the right end.
        uxr: ``u_x`` at the right end.
        g_bc: right-hand sides ``(..., T)`` for both ends or ``(..., 2T)`` left then right
            (unused when periodic).

    Returns:
        Scalar.
    """
    left, right = _boundary_residuals(problem, ul, uxl, ur, uxr, g_bc)
    return (left**2).mean() + (right**2).mean()


def constraint_rows(
    problem: Problem,
    w: torch.Tensor,
    basis: tuple[torch.Tensor, ...],
    *,
    ic_weight: float,
    bc_scale: float | torch.Tensor,
    ridge: float,
    off: torch.Tensor | None = None,
    off_b: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hard-constraint residual ``F(w)`` of every expert: PDE, initial, boundary, ridge rows.

    Shared by :class:`HardConstraintMoE` (``E = K`` experts) and the family version in
    :mod:`torchloom.pinn.moe_family` (``E = B K`` instance-expert pairs).

    Args:
        problem: the PDE (``pde``, ``boundary`` kind, ``robin()`` for Robin ends).
        w: ``(E, N)`` basis weights.
        basis: ``(phi, phi_t, phi_x, phi_xx, phi_ic, u_ic, phi_l, phi_lx, phi_r, phi_rx,
            g_bc)``: the basis and its derivatives at the constraint points ``(E, P, N)``, at
            the initial points ``(E, Q, N)`` with values ``(E, Q)``, at the two ends
            ``(E, B, N)``, and the boundary right-hand sides (see :func:`_boundary_residuals`).
        ic_weight: initial rows are scaled by ``ic_weight / √Q``.
        bc_scale: boundary-row weights, a number or ``(E, 2B)``.
        ridge: the ridge rows ``ridge · w``.
        off: ``(E, P, 4)`` offsets of ``(u, u_t, u_x, u_xx)`` at the constraint points.
        off_b: ``(E, B, 4)`` offsets of ``(u_l, u_lx, u_r, u_rx)`` at the ends.

    Returns:
        ``(E, P + Q + 2B + N)``: PDE rows ``/ √P``, initial rows, boundary rows, ridge rows.
    """
    phi, phi_t, phi_x, phi_xx, phi_ic, u_ic, phi_l, phi_lx, phi_r, phi_rx, g_bc = basis
    u, ut, ux, uxx = _fields(w, (phi, phi_t, phi_x, phi_xx), off)
    r = problem.pde(u, ut, ux, uxx) / math.sqrt(phi.shape[1])
    ric = (torch.einsum("kqn,kn->kq", phi_ic, w) - u_ic) * (ic_weight / math.sqrt(phi_ic.shape[1]))
    ul, uxl, ur, uxr = _fields(w, (phi_l, phi_lx, phi_r, phi_rx), off_b)
    rb = torch.cat(_boundary_residuals(problem, ul, uxl, ur, uxr, g_bc, dim=1), 1) * bc_scale
    return torch.cat([r, ric, rb, ridge * w], dim=1)


def constraint_rows_jacobian(
    problem: Problem,
    w: torch.Tensor,
    basis: tuple[torch.Tensor, ...],
    *,
    ic_weight: float,
    bc_scale: float | torch.Tensor,
    ridge: float,
    off: torch.Tensor | None = None,
) -> torch.Tensor:
    """Analytic Jacobian ``∂F/∂w`` ``(E, P + Q + 2B + N, N)`` of :func:`constraint_rows`.

    Args:
        problem: the PDE (``pde_partials`` gives the chain rule through it).
        w: ``(E, N)``.
        basis: as in :func:`constraint_rows`.
        ic_weight: as in :func:`constraint_rows`.
        bc_scale: as in :func:`constraint_rows`.
        ridge: as in :func:`constraint_rows`.
        off: as in :func:`constraint_rows` (the boundary rows are linear: ``off_b`` drops out).

    Returns:
        ``(E, P + Q + 2B + N, N)``.
    """
    phi, phi_t, phi_x, phi_xx, phi_ic, _, phi_l, phi_lx, phi_r, phi_rx, _ = basis
    a, b, c, d = problem.pde_partials(*_fields(w, (phi, phi_t, phi_x, phi_xx), off))
    Jp = (
        a[..., None] * phi + b[..., None] * phi_t + c[..., None] * phi_x + d[..., None] * phi_xx
    ) / math.sqrt(phi.shape[1])
    Jic = phi_ic * (ic_weight / math.sqrt(phi_ic.shape[1]))
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    Jb = torch.cat(_boundary_residuals(problem, phi_l, phi_lx, phi_r, phi_rx, zero, dim=1), 1)
    if isinstance(bc_scale, torch.Tensor):
        bc_scale = bc_scale.unsqueeze(-1)
    eye = torch.eye(w.shape[1], dtype=w.dtype, device=w.device).expand(w.shape[0], -1, -1)
    return torch.cat([Jp, Jic, Jb * bc_scale, ridge * eye], dim=1)


def _fields(
    w: torch.Tensor, basis: tuple[torch.Tensor, ...], off: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    out = [torch.einsum("kpn,kn->kp", b, w) for b in basis]
    if off is not None:
        out = [o + off[..., i] for i, o in enumerate(out)]
    return tuple(out)


class HardConstraintMoE(nn.Module):
    """Physics-informed hard-constraint mixture of experts (PI-HC-MoE) for 1D time-dependent PDEs.

    One basis network ``φ_θ(x, t) ∈ R^N`` is shared by all experts, as in the paper (where a
    single model emits the basis and the experts are the constrained solves). The ``x`` range
    is split into ``K`` equal slabs; expert ``k`` solves for its own weights ``w_k`` so that
    ``u_k = φ_θᵀ w_k`` satisfies the discretised PDE at the constraint points of *its* slab,
    the *global* initial condition, the *global* boundary conditions and a small ridge term
    (:meth:`constraint_residual`); the solution on slab ``k`` is ``u_k``. With ``K = 1`` it is
    one global hard constraint (PI-HC).

    Args:
        problem: :class:`ReactionDiffusion` (periodic), :class:`Burgers` (Dirichlet) or
            :class:`DiffusionSorption` (Dirichlet at ``x = 0``, Robin at ``x = 1``).
        n_experts: ``K``.
        n_basis: basis functions ``N`` (weights per expert).
        width: hidden width of the basis network.
        depth: hidden layers of the basis network.
        ic_weight: weight of the initial-condition rows in every constraint.
        bc_weight: weight of the boundary rows in every constraint.
        ridge: ridge rows ``ridge · w`` (the paper uses ``1e-4``).
        lm_iter: Levenberg–Marquardt iterations per solve.
        hessian: Hessian of the implicit backward, see :func:`hard_constraint_solve`.
        initial: ``"constraint"``: ``u = φᵀw`` and the initial condition is a block of rows of
            every expert's least-squares constraint (the paper's diffusion–sorption setup);
            ``"exact"``: the authors' *mollifier* (their Navier–Stokes setup),
            ``u = u₀(x) + (t − t₀)/(t_end − t₀) · φᵀw``, so ``u(x, t₀) = u₀(x)`` holds by
            construction and the constraint holds the PDE and boundary rows only (the
            initial-condition rows vanish identically).
        initial_rows: with ``initial="constraint"``: ``"global"``, every expert's constraint
            holds the initial condition over the whole domain (the authors' diffusion–sorption
            code broadcasts it to every expert), or ``"local"``, only over its own slab (their
            Navier–Stokes code partitions it like the PDE rows); the number of initial points
            must then be a multiple of ``K``.
        boundary_rows: ``"global"``: every expert's constraint holds both boundary conditions
            (the authors' code); ``"local"``: only the experts whose slab touches a boundary
            hold its rows (the first the left, the last the right; not for periodic problems).
    """

    def __init__(
        self,
        problem: Problem,
        n_experts: int = 4,
        n_basis: int = 16,
        width: int = 32,
        depth: int = 2,
        ic_weight: float = 10.0,
        bc_weight: float = 10.0,
        ridge: float = 1e-4,
        lm_iter: int = 10,
        hessian: Literal["exact", "gauss_newton"] = "exact",
        initial: Literal["constraint", "exact"] = "constraint",
        initial_rows: Literal["global", "local"] = "global",
        boundary_rows: Literal["global", "local"] = "global",
    ) -> None:
        super().__init__()
        check_int(n_experts, "n_experts")
        if initial not in ("constraint", "exact"):
            raise ValueError(f"initial must be 'constraint' or 'exact', got {initial!r}")
        self.initial: Literal["constraint", "exact"] = initial
        if initial_rows not in ("global", "local"):
            raise ValueError(f"initial_rows must be 'global' or 'local', got {initial_rows!r}")
        self.initial_rows: Literal["global", "local"] = initial_rows
        if boundary_rows not in ("global", "local"):
            raise ValueError(f"boundary_rows must be 'global' or 'local', got {boundary_rows!r}")
        if boundary_rows == "local" and problem.boundary == "periodic":
            raise ValueError("boundary_rows='local' needs non-periodic boundaries")
        self.boundary_rows: Literal["global", "local"] = boundary_rows
        check_int(n_basis, "n_basis")
        self.problem = problem
        self.K = n_experts
        self.N = n_basis
        self.basis = BatchedMLP(1, 2, n_basis, width, depth)
        self.ic_weight = check_positive(ic_weight, "ic_weight")
        self.bc_weight = check_positive(bc_weight, "bc_weight")
        self.ridge = check_positive(ridge, "ridge", strict=False)
        self.lm_iter = check_int(lm_iter, "lm_iter")
        self.hessian: Literal["exact", "gauss_newton"] = hessian
        self.register_buffer("w", torch.zeros(n_experts, n_basis))
        self.w: torch.Tensor

    def _boundary_scale(self, phi_l: torch.Tensor) -> torch.Tensor:
        """Row weights ``(K, 2B)`` of the boundary rows (left block, then right block)."""
        K, B = phi_l.shape[:2]
        scale = torch.full(
            (K, 2 * B), self.bc_weight / math.sqrt(B), dtype=phi_l.dtype, device=phi_l.device
        )
        if self.boundary_rows == "local":
            scale[1:, :B] = 0.0
            scale[:-1, B:] = 0.0
        return scale

    def edges(self) -> torch.Tensor:
        """Slab boundaries in ``x``, ``(K + 1,)``."""
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        return torch.linspace(lo, hi, self.K + 1, dtype=torch.float64)

    def _normalise(self, pts: torch.Tensor) -> torch.Tensor:
        lo = torch.tensor(self.problem.lower, dtype=pts.dtype, device=pts.device)
        hi = torch.tensor(self.problem.upper, dtype=pts.dtype, device=pts.device)
        return 2.0 * (pts - lo) / (hi - lo) - 1.0

    def split(self, pts: torch.Tensor) -> torch.Tensor:
        """Expert index of every point (by its ``x`` slab).

        Args:
            pts: ``(P, 2)`` points ``(x, t)``.

        Returns:
            ``(P,)`` long tensor in ``[0, K)``.
        """
        e = self.edges().to(pts)
        return torch.bucketize(pts[:, 0].contiguous(), e[1:-1], right=True)

    def group(self, pts: torch.Tensor) -> torch.Tensor:
        """Points grouped per expert, ``(K, P / K, 2)``.

        Args:
            pts: ``(P, 2)`` points with the same number in every slab.

        Returns:
            ``(K, P / K, 2)``.
        """
        if pts.dim() != 2 or pts.shape[1] != 2:
            raise ValueError(f"pts must have shape (P, 2), got {tuple(pts.shape)}")
        if pts.shape[0] < self.K:
            raise ValueError(
                f"n_experts = {self.K} is more than the number of points {pts.shape[0]}"
            )
        idx = self.split(pts)
        counts = torch.bincount(idx, minlength=self.K)
        if bool((counts != counts[0]).any()):
            raise ValueError(f"every expert needs the same number of points, got {counts.tolist()}")
        order = torch.argsort(idx, stable=True)
        return pts[order].reshape(self.K, -1, 2)

    def sample_constraint_points(
        self,
        n_per_expert: int,
        n_ic: int,
        n_bc: int = 32,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uniform constraint points per slab, global initial points, boundary times.

        Args:
            n_per_expert: interior points per expert.
            n_ic: ``t = 0`` points over the whole ``x`` range (shared by every expert).
            n_bc: boundary times (shared by every expert).
            generator: randomness.

        Returns:
            ``(pde_pts, ic_pts, bc_t)`` of shapes ``(K, n_per_expert, 2)``, ``(n_ic, 2)``,
            ``(n_bc,)``.
        """
        check_int(n_per_expert, "n_per_expert")
        check_int(n_ic, "n_ic")
        check_int(n_bc, "n_bc")
        e = self.edges()
        dtype, device = self.basis.weights[0].dtype, self.basis.weights[0].device
        u = torch.rand(self.K, n_per_expert, 2, generator=generator, dtype=torch.float64)
        x = e[:-1, None] + u[..., 0] * (e[1:] - e[:-1])[:, None]
        t = u[..., 1] * self.problem.t_end
        xi = e[0] + (torch.arange(n_ic, dtype=torch.float64) + 0.5) / n_ic * (e[-1] - e[0])
        ic = torch.stack([xi, torch.zeros_like(xi)], -1)
        bc_t = torch.linspace(0.0, self.problem.t_end, n_bc, dtype=torch.float64)
        # drawn in float64 on the generator's (CPU) side, returned where the basis lives
        out = (torch.stack([x, t], -1), ic, bc_t)
        return tuple(v.to(device=device, dtype=dtype) for v in out)  # type: ignore[return-value]

    def fd_grid(self, nx: int, nt: int) -> tuple[torch.Tensor, float, float]:
        """The regular grid of the finite-difference outer loss (``outer="fd"`` of :meth:`losses`).

        ``t_i = i · t_end / (nt − 1)``; ``x`` spans the domain with both ends, or for a periodic
        problem ``x_j = x₀ + j (x₁ − x₀) / nx`` (the right end is the left one).

        Args:
            nx: nodes in ``x`` (``≥ 4``, and ``≥ K``).
            nt: nodes in ``t`` (``≥ 3``).

        Returns:
            ``(pts, dx, dt)``: nodes ``(nt, nx, 2)`` as ``(x, t)`` (dtype and device of the basis
            network) and the spacings.
        """
        check_int(nx, "nx", minimum=max(4, self.K))
        check_int(nt, "nt", minimum=3)
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        dtype, device = self.basis.weights[0].dtype, self.basis.weights[0].device
        if self.problem.boundary == "periodic":
            dx = (hi - lo) / nx
            x = lo + dx * torch.arange(nx, dtype=torch.float64)
        else:
            dx = (hi - lo) / (nx - 1)
            x = torch.linspace(lo, hi, nx, dtype=torch.float64)
        dt = self.problem.t_end / (nt - 1)
        t = torch.linspace(0.0, self.problem.t_end, nt, dtype=torch.float64)
        T, X = torch.meshgrid(t, x, indexing="ij")
        return torch.stack([X, T], -1).to(device=device, dtype=dtype), dx, dt

    def sample_grid_points(
        self,
        n_per_expert: int,
        nx: int,
        nt: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Constraint points drawn without replacement from the nodes of :meth:`fd_grid`.

        As the authors' code does (it samples 20 000 of its grid's nodes per expert and step),
        so that the inner constraint and the finite-difference outer loss see the same points.

        Args:
            n_per_expert: nodes per expert (at most the nodes of the smallest slab).
            nx: nodes in ``x`` of the grid.
            nt: nodes in ``t``.
            generator: randomness.

        Returns:
            ``(K, n_per_expert, 2)``.
        """
        check_int(n_per_expert, "n_per_expert")
        pts, _, _ = self.fd_grid(nx, nt)
        flat = pts.reshape(-1, 2)
        idx = self.split(flat).cpu()
        out = []
        for k in range(self.K):
            nodes = torch.nonzero(idx == k).squeeze(1)
            if nodes.numel() < n_per_expert:
                raise ValueError(
                    f"n_per_expert = {n_per_expert} exceeds the {nodes.numel()} grid nodes of "
                    f"slab {k}"
                )
            pick = torch.randperm(nodes.numel(), generator=generator)[:n_per_expert]
            out.append(flat[nodes[pick].to(flat.device)])
        return torch.stack(out)

    def fd_residual(self, w: torch.Tensor, nx: int, nt: int) -> torch.Tensor:
        """PDE residual of the *assembled* solution by finite differences on :meth:`fd_grid`.

        Every node takes its value from its own slab's expert; the stencils
        (:func:`grid_derivatives`) at nodes next to a slab edge mix values of neighbouring
        experts, so a jump between experts shows up as a large residual there (the authors'
        outer loss, which couples neighbouring experts through the PDE itself).

        Args:
            w: weights ``(K, N)`` (with graph, to train through it).
            nx: nodes in ``x``.
            nt: nodes in ``t``.

        Returns:
            The residual ``(nt, nx)``.
        """
        pts, dx, dt = self.fd_grid(nx, nt)
        u = self.evaluate(pts.reshape(-1, 2), w).reshape(nt, nx)
        u_t, u_x, u_xx = grid_derivatives(u, dx, dt, self.problem.boundary == "periodic")
        return self.problem.pde(u, u_t, u_x, u_xx)

    def basis_terms(
        self, pts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Basis values and the derivatives a PDE needs, at points of any leading shape.

        Args:
            pts: ``(..., 2)`` points ``(x, t)``.

        Returns:
            ``(Φ, Φ_t, Φ_x, Φ_xx)``, each ``(..., N)`` (chain rule for the normalised inputs).
        """
        lo = torch.tensor(self.problem.lower, dtype=pts.dtype, device=pts.device)
        hi = torch.tensor(self.problem.upper, dtype=pts.dtype, device=pts.device)
        scale = 2.0 / (hi - lo)
        lead = pts.shape[:-1]
        phi, d1, d2 = self.basis(self._normalise(pts).reshape(1, -1, 2))
        if d1 is None or d2 is None:
            raise AssertionError("unreachable")  # pragma: no cover
        shape = (*lead, self.N)
        return (
            phi.reshape(shape),
            (d1[..., 1] * scale[1]).reshape(shape),
            (d1[..., 0] * scale[0]).reshape(shape),
            (d2[..., 0] * scale[0] ** 2).reshape(shape),
        )

    def terms(self, pts: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The solution as an affine function of the weights, ``u = c + Bᵀw``, with derivatives.

        With ``initial="constraint"``, ``c = 0`` and ``B`` is :meth:`basis_terms`; with
        ``initial="exact"``, ``u = u₀(x) + s(t) φᵀw`` with ``s = (t − t₀)/(t_end − t₀)``:
        ``c = (u₀, 0, u₀', u₀'')`` (derivatives of the initial condition by autograd) and
        ``B = (s φ, φ/(t_end − t₀) + s φ_t, s φ_x, s φ_xx)``.

        Args:
            pts: ``(..., 2)`` points ``(x, t)``.

        Returns:
            ``(c, (B_u, B_t, B_x, B_xx))``: ``c`` of shape ``(..., 4)`` holds the offsets of
            ``(u, u_t, u_x, u_xx)``; each ``B`` is ``(..., N)``.
        """
        phi, phi_t, phi_x, phi_xx = self.basis_terms(pts)
        if self.initial == "constraint":
            return torch.zeros(*pts.shape[:-1], 4, dtype=phi.dtype, device=phi.device), (
                phi,
                phi_t,
                phi_x,
                phi_xx,
            )
        t0, t1 = self.problem.lower[1], self.problem.upper[1]
        sc = ((pts[..., 1] - t0) / (t1 - t0)).unsqueeze(-1)
        with torch.enable_grad():
            x = pts[..., 0].detach().requires_grad_(True)
            u0 = self.problem.initial(x)
            (d1,) = torch.autograd.grad(u0.sum(), x, create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), x)
        c = torch.stack([u0.detach(), torch.zeros_like(d2), d1.detach(), d2.detach()], -1)
        basis = (sc * phi, phi / (t1 - t0) + sc * phi_t, sc * phi_x, sc * phi_xx)
        return c.to(phi), basis

    def _boundary_pts(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        left = torch.stack([torch.full_like(t, lo), t], -1)
        right = torch.stack([torch.full_like(t, hi), t], -1)
        return left, right

    def constraint_residual(
        self,
        w: torch.Tensor,
        phi: torch.Tensor,
        phi_t: torch.Tensor,
        phi_x: torch.Tensor,
        phi_xx: torch.Tensor,
        phi_ic: torch.Tensor,
        u_ic: torch.Tensor,
        phi_l: torch.Tensor,
        phi_lx: torch.Tensor,
        phi_r: torch.Tensor,
        phi_rx: torch.Tensor,
        g_bc: torch.Tensor,
        off: torch.Tensor | None = None,
        off_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every expert's hard constraint ``F(w)``: PDE, initial, boundary and ridge rows.

        Args:
            w: ``(K, N)``.
            phi: ``(K, P, N)`` basis at the expert's constraint points; ``phi_t``, ``phi_x``,
                ``phi_xx`` likewise.
            phi_ic: ``(K, Q, N)`` basis at the (global) initial points.
            u_ic: ``(K, Q)`` initial values.
            phi_l: ``(K, B, N)`` basis at the left boundary; ``phi_lx`` its ``x``-derivative;
                ``phi_r``, ``phi_rx`` at the right boundary.
            g_bc: ``(K, B)`` Dirichlet values (unused when periodic); ``(K, 2B)`` left then
                right right-hand sides for a ``"robin"`` problem (``a u + b u_x = g``).
            off: ``(K, P, 4)`` offsets of ``(u, u_t, u_x, u_xx)`` at the constraint points
                (:meth:`terms`; default 0).
            off_b: ``(K, B, 4)`` offsets of ``(u_l, u_lx, u_r, u_rx)`` at the boundaries
                (default 0).

        Returns:
            ``(K, P + Q + 2B + N)``: PDE rows scaled by ``1/√P``, initial rows by
            ``ic_weight/√Q``, boundary rows (periodic: ``u`` and ``u_x`` match across the
            ends; Dirichlet: ``u = g`` at both ends; Robin: ``a u + b u_x = g`` at each end,
            ``problem.robin()``) by ``bc_weight/√B``, then ``ridge · w``.
        """
        basis = (phi, phi_t, phi_x, phi_xx, phi_ic, u_ic, phi_l, phi_lx, phi_r, phi_rx, g_bc)
        return constraint_rows(
            self.problem,
            w,
            basis,
            ic_weight=self.ic_weight,
            bc_scale=self._boundary_scale(phi_l),
            ridge=self.ridge,
            off=off,
            off_b=off_b,
        )

    def constraint_jacobian(
        self,
        w: torch.Tensor,
        phi: torch.Tensor,
        phi_t: torch.Tensor,
        phi_x: torch.Tensor,
        phi_xx: torch.Tensor,
        phi_ic: torch.Tensor,
        u_ic: torch.Tensor,
        phi_l: torch.Tensor,
        phi_lx: torch.Tensor,
        phi_r: torch.Tensor,
        phi_rx: torch.Tensor,
        g_bc: torch.Tensor,
        off: torch.Tensor | None = None,
        off_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Analytic Jacobian ``∂F/∂w`` of :meth:`constraint_residual` (chain rule through the PDE).

        Args:
            w: ``(K, N)``.
            phi: ``(K, P, N)``; the other arguments as in :meth:`constraint_residual`.
            phi_t: ``(K, P, N)``.
            phi_x: ``(K, P, N)``.
            phi_xx: ``(K, P, N)``.
            phi_ic: ``(K, Q, N)``.
            u_ic: ``(K, Q)``.
            phi_l: ``(K, B, N)``.
            phi_lx: ``(K, B, N)``.
            phi_r: ``(K, B, N)``.
            phi_rx: ``(K, B, N)``.
            g_bc: ``(K, B)``.
            off: ``(K, P, 4)`` or ``None``.
            off_b: ``(K, B, 4)`` or ``None``.

        Returns:
            ``(K, P + Q + 2B + N, N)``.
        """
        basis = (phi, phi_t, phi_x, phi_xx, phi_ic, u_ic, phi_l, phi_lx, phi_r, phi_rx, g_bc)
        return constraint_rows_jacobian(
            self.problem,
            w,
            basis,
            ic_weight=self.ic_weight,
            bc_scale=self._boundary_scale(phi_l),
            ridge=self.ridge,
            off=off,
        )

    def solve(
        self, pde_pts: torch.Tensor, ic_pts: torch.Tensor, bc_t: torch.Tensor
    ) -> torch.Tensor:
        """Solve every expert's hard constraint (differentiable in the basis parameters).

        Args:
            pde_pts: ``(K, P, 2)`` constraint points, ``pde_pts[k]`` in slab ``k``.
            ic_pts: ``(Q, 2)`` initial points (every expert fits the whole initial condition).
            bc_t: ``(B,)`` boundary times (every expert fits the boundary conditions).

        Returns:
            ``w*`` ``(K, N)``; also stored (detached) as the warm start and for :meth:`forward`.
        """
        if pde_pts.dim() != 3 or pde_pts.shape[0] != self.K or pde_pts.shape[2] != 2:
            raise ValueError(f"pde_pts must have shape (K={self.K}, P, 2), got {pde_pts.shape}")
        off, (phi, phi_t, phi_x, phi_xx) = self.terms(pde_pts)
        K = self.K
        left, right = self._boundary_pts(bc_t)
        if self.initial_rows == "local":
            ic_pts = self.group(ic_pts)  # (K, Q / K, 2): each expert its own slab's points
        off_ic, (phi_ic, _, _, _) = self.terms(ic_pts)
        off_l, (bl, _, blx, _) = self.terms(left)
        off_r, (br, _, brx, _) = self.terms(right)
        u_ic = self.problem.initial(ic_pts[..., 0]) - off_ic[..., 0]
        off_b = torch.stack([off_l[:, 0], off_l[:, 2], off_r[:, 0], off_r[:, 2]], -1)
        g = self.problem.boundary_value(bc_t)

        def rep(a: torch.Tensor) -> torch.Tensor:
            return a.unsqueeze(0).expand(K, *a.shape)

        w = hard_constraint_solve(
            self.constraint_residual,
            self.w.to(phi),
            phi,
            phi_t,
            phi_x,
            phi_xx,
            phi_ic if phi_ic.dim() == 3 else rep(phi_ic),
            u_ic if u_ic.dim() == 2 else rep(u_ic),
            rep(bl),
            rep(blx),
            rep(br),
            rep(brx),
            rep(g),
            off,
            rep(off_b),
            max_iter=self.lm_iter,
            jac=self.constraint_jacobian,
            hessian=self.hessian,
        )
        self.w = w.detach()
        return w

    def evaluate(self, pts: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """``u`` at arbitrary points, each evaluated with the weights of the slab's expert.

        Args:
            pts: ``(P, 2)`` points ``(x, t)``.
            w: weights ``(K, N)`` (default: the last solve's).

        Returns:
            ``(P,)``.
        """
        w = self.w if w is None else w
        idx = self.split(pts)
        phi, _, _ = self.basis(self._normalise(pts).unsqueeze(0), derivatives=False)
        u_all = phi[0] @ w.to(phi).T  # (P, K): every expert at every point (shared basis)
        u = u_all.gather(1, idx.unsqueeze(1)).squeeze(1)
        if self.initial == "exact":
            t0, t1 = self.problem.lower[1], self.problem.upper[1]
            u = self.problem.initial(pts[:, 0]).to(u) + (pts[:, 1] - t0) / (t1 - t0) * u
        return u

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`evaluate` with the stored weights.

        Args:
            pts: ``(P, 2)``.

        Returns:
            ``(P,)``.
        """
        return self.evaluate(pts)

    def losses(
        self,
        w: torch.Tensor,
        train_pts: torch.Tensor | None,
        n_boundary: int = 32,
        outer: Literal["autograd", "fd"] = "autograd",
        grid: tuple[int, int] = (128, 64),
    ) -> dict[str, torch.Tensor]:
        """Training loss of the basis network, given solved weights (the PINN loss of the paper).

        Args:
            w: solved weights ``(K, N)`` (from :meth:`solve`, with graph).
            train_pts: ``(K, P, 2)`` residual points of the autograd PDE loss (each expert's
                residual at its own slab's points); unused with ``outer="fd"``.
            n_boundary: points in ``t`` on each interface and boundary.
            outer: ``"autograd"``: the PDE term is each expert's exact residual at
                ``train_pts``; ``"fd"``: the authors' outer loss, the finite-difference residual
                of the assembled solution on the regular grid (:meth:`fd_residual`), whose
                stencils across a slab edge mix neighbouring experts.
            grid: ``(nx, nt)`` nodes of that grid.

        Returns:
            ``{"pde", "interface", "boundary", "ic"}``: mean squared PDE residual of the
            assembled solution; mismatch of ``u`` and ``u_x`` between neighbouring experts at
            the slab interfaces; boundary misfit of the assembled solution (periodic: ``u``,
            ``u_x`` across the ends; Dirichlet: ``u − g``); initial-condition misfit of the
            assembled solution at ``2 n_boundary`` points (the paper's trainer weighs initial
            and boundary losses too: the least-squares solve trades them against the PDE rows,
            so the basis must be trained to make them compatible).
        """
        if outer == "fd":
            r = self.fd_residual(w, *grid)
        elif outer == "autograd":
            if train_pts is None:
                raise ValueError("train_pts is required with outer='autograd'")
            off, basis = self.terms(train_pts)
            r = self.problem.pde(*_fields(w, basis, off))
        else:
            raise ValueError(f"outer must be 'autograd' or 'fd', got {outer!r}")
        dtype, dev = r.dtype, r.device
        t = torch.linspace(0.0, self.problem.t_end, n_boundary, dtype=dtype, device=dev)
        zero = torch.zeros((), dtype=dtype, device=dev)
        inter = zero
        if self.K > 1:
            e = self.edges().to(r)[1:-1]
            pts = torch.stack([e[:, None].expand(-1, n_boundary), t.expand(self.K - 1, -1)], -1)
            _, (v, _, vx, _) = self.terms(pts)  # (K - 1, B, N): the basis (and c) is shared
            dw = w[:-1] - w[1:]
            inter = (torch.einsum("kbn,kn->kb", v, dw) ** 2).mean() + (
                torch.einsum("kbn,kn->kb", vx, dw) ** 2
            ).mean()
        left, right = self._boundary_pts(t)
        cl, (bl, _, blx, _) = self.terms(left)
        cr, (br, _, brx, _) = self.terms(right)
        ul, ur = cl[:, 0] + bl @ w[0], cr[:, 0] + br @ w[-1]
        uxl, uxr = cl[:, 2] + blx @ w[0], cr[:, 2] + brx @ w[-1]
        bnd = boundary_misfit(self.problem, ul, uxl, ur, uxr, self.problem.boundary_value(t))
        lo_x, hi_x = self.problem.lower[0], self.problem.upper[0]
        xi = lo_x + (torch.arange(2 * n_boundary, dtype=dtype, device=dev) + 0.5) * (
            (hi_x - lo_x) / (2 * n_boundary)
        )
        ic_pts = torch.stack([xi, torch.zeros_like(xi)], -1)
        c0, (b0, _, _, _) = self.terms(ic_pts)
        u0 = c0[:, 0] + (b0 * w[self.split(ic_pts)]).sum(-1)
        ic = ((u0 - self.problem.initial(xi)) ** 2).mean()
        return {"pde": (r**2).mean(), "interface": inter, "boundary": bnd, "ic": ic}


def relative_l2(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> float:
    """Relative L2 error ``‖pred − ref‖ / ‖ref‖``.

    Args:
        pred: prediction, any shape.
        ref: reference, same shape.

    Returns:
        The error as a float.
    """
    p = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred)
    r = np.asarray(ref.detach().cpu() if isinstance(ref, torch.Tensor) else ref)
    return float(np.linalg.norm(p - r) / np.linalg.norm(r))
