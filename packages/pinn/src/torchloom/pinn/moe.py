"""Physics-informed hard constraints at scale with a mixture of experts (PI-HC-MoE).

A network outputs ``N`` basis functions ``φ_θ(x) ∈ R^N``; the solution is ``u(x) = φ_θ(x)ᵀ w``.
The weights are not trained: for given ``θ`` they solve the *hard constraint*, the
discretised PDE (and initial data) at constraint points, by nonlinear least squares,

.. code-block:: text

    w*(θ) = argmin_w ½ ‖F(w; Φ_θ)‖²          (Levenberg–Marquardt)

and ``θ`` is trained through ``w*`` with the implicit function theorem applied to the
optimality condition ``g(w, Φ) = J_Fᵀ F = 0``: ``∂w*/∂Φ = −(∂g/∂w)⁻¹ ∂g/∂Φ``. The domain is
split into ``K`` subdomains; each *expert* has its own basis network and its own constraint,
so the ``K`` solves are independent, small, and run batched (:func:`hard_constraint_solve`
vmaps every per-expert Jacobian and Hessian). One global hard constraint over the whole domain
(``K = 1``) must represent the whole solution with one basis, so with the same total number of
weights its solve costs ``O(M (KN)² + (KN)³)`` against ``O(M N² + K N³)`` for the experts.

Problem shipped here: 1D reaction–diffusion (Fisher–KPP) ``u_t − ν u_xx − ρ u (1 − u) = 0`` on
``[0, 2π) × [0, T]``, periodic in ``x``, with a classical spectral Strang-splitting reference
(:func:`reaction_diffusion_reference`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive

__all__ = [
    "BatchedMLP",
    "HardConstraintMoE",
    "ReactionDiffusion",
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

    Returns:
        ``w`` of shape ``(K, N)``.
    """
    check_int(max_iter, "max_iter")
    single = _per_expert(F, len(aux))
    jac = torch.func.vmap(torch.func.jacfwd(single, argnums=0))
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
        return levenberg_marquardt(F, w0, *aux, **opts)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        F, _, _, *aux = inputs
        ctx.F = F
        ctx.save_for_backward(output, *aux)

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> tuple[Any, ...]:
        w, *aux = ctx.saved_tensors
        single = _per_expert(ctx.F, len(aux))

        def grad_half_sq(wk: torch.Tensor, *ak: torch.Tensor) -> torch.Tensor:
            r = single(wk, *ak)
            J = torch.func.jacfwd(single, argnums=0)(wk, *ak)
            return J.T @ r  # g = J_Fᵀ F, zero at the optimum

        with torch.enable_grad():
            H = torch.func.vmap(torch.func.jacfwd(grad_half_sq, argnums=0))(w, *aux)  # (K, N, N)
            lam = -torch.linalg.solve(H.transpose(1, 2), v.unsqueeze(-1)).squeeze(-1)
            wanted = ctx.needs_input_grad[3:]
            aux_in = [a.detach().requires_grad_(bool(n)) for a, n in zip(aux, wanted)]
            need = [a for a in aux_in if a.requires_grad]
            grads: list[torch.Tensor | None] = [None] * len(aux)
            if need:
                g = torch.func.vmap(grad_half_sq)(w.detach(), *aux_in)
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
) -> torch.Tensor:
    """Differentiable per-expert constraint solve ``w* = argmin_w ½ ‖F(w, *aux)‖²``.

    Forward: :func:`levenberg_marquardt`, batched over experts. Backward: the implicit
    function theorem on ``g = J_Fᵀ F = 0`` per expert, with the exact Hessian
    ``∂g/∂w = J_FᵀJ_F + Σ_i F_i ∇²F_i`` (``K`` small ``N × N`` solves): for an incoming
    gradient ``v``, ``λ = −(∂g/∂w)⁻ᵀ v`` and ``∂L/∂aux = λᵀ ∂g/∂aux``. No gradient flows to
    ``w0``.

    Args:
        F: residual ``F(w, *aux) → (K, R)``, expert ``k`` depending on ``w[k]``, ``aux[·][k]``.
        w0: initial guess ``(K, N)``.
        *aux: tensors with leading dimension ``K``; gradients flow to those that require it.
        max_iter: Levenberg–Marquardt iterations.
        tol: gradient-norm tolerance.
        damping: initial damping.

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
    opts = {"max_iter": max_iter, "tol": tol, "damping": damping}
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


class HardConstraintMoE(nn.Module):
    """Hard-constrained mixture of experts for :class:`ReactionDiffusion`.

    The ``x`` range is split into ``K`` equal slabs; expert ``k`` owns slab ``k`` and a
    ``BatchedMLP`` basis ``φ_k(x, t) ∈ R^N``. :meth:`solve` fits every expert's weights to
    the PDE residual at its constraint points and the initial condition at its initial points
    (:func:`hard_constraint_solve`); :meth:`forward` evaluates ``u = φ_kᵀ w_k`` for points of
    slab ``k``. With ``K = 1`` it is one global hard constraint.

    Args:
        problem: the PDE.
        n_experts: ``K``.
        n_basis: basis functions per expert ``N``.
        width: hidden width of each basis network.
        depth: hidden layers of each basis network.
        ic_weight: weight of the initial-condition rows in the constraint.
        lm_iter: Levenberg–Marquardt iterations per solve.
    """

    def __init__(
        self,
        problem: ReactionDiffusion,
        n_experts: int = 4,
        n_basis: int = 16,
        width: int = 32,
        depth: int = 2,
        ic_weight: float = 10.0,
        lm_iter: int = 10,
    ) -> None:
        super().__init__()
        check_int(n_experts, "n_experts")
        check_int(n_basis, "n_basis")
        self.problem = problem
        self.K = n_experts
        self.N = n_basis
        self.basis = BatchedMLP(n_experts, 2, n_basis, width, depth)
        self.ic_weight = check_positive(ic_weight, "ic_weight")
        self.lm_iter = check_int(lm_iter, "lm_iter")
        self.register_buffer("w", torch.zeros(n_experts, n_basis))
        self.w: torch.Tensor

    def edges(self) -> torch.Tensor:
        """Slab boundaries in ``x``, ``(K + 1,)``."""
        return torch.linspace(0.0, 2.0 * math.pi, self.K + 1, dtype=torch.float64)

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
            pts: ``(P, 2)`` points with the same number in every slab (use
                :meth:`sample_constraint_points`).

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
        self, n_per_expert: int, n_ic_per_expert: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform constraint points per slab and initial-condition points per slab.

        Args:
            n_per_expert: interior points per expert.
            n_ic_per_expert: ``t = 0`` points per expert.
            generator: randomness.

        Returns:
            ``(pde_pts, ic_pts)`` of shapes ``(K, n_per_expert, 2)``, ``(K, n_ic_per_expert, 2)``.
        """
        check_int(n_per_expert, "n_per_expert")
        check_int(n_ic_per_expert, "n_ic_per_expert")
        e = self.edges()
        dtype = self.basis.weights[0].dtype
        u = torch.rand(self.K, n_per_expert, 2, generator=generator, dtype=torch.float64)
        x = e[:-1, None] + u[..., 0] * (e[1:] - e[:-1])[:, None]
        t = u[..., 1] * self.problem.t_end
        xi = (
            e[:-1, None]
            + (torch.arange(n_ic_per_expert) + 0.5) / n_ic_per_expert * (e[1:] - e[:-1])[:, None]
        )
        ic = torch.stack([xi, torch.zeros_like(xi)], -1)
        return torch.stack([x, t], -1).to(dtype), ic.to(dtype)

    def basis_terms(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Basis values and the derivatives the PDE needs at grouped points.

        Args:
            pts: ``(K, P, 2)``.

        Returns:
            ``(Φ, Φ_t, Φ_xx)``, each ``(K, P, N)`` (chain rule for the normalised inputs).
        """
        scale = 2.0 / torch.tensor(
            [self.problem.upper[0], self.problem.upper[1]], dtype=pts.dtype, device=pts.device
        )
        phi, d1, d2 = self.basis(self._normalise(pts))
        if d1 is None or d2 is None:
            raise AssertionError("unreachable")  # pragma: no cover
        return phi, d1[..., 1] * scale[1], d2[..., 0] * scale[0] ** 2

    def constraint_residual(
        self,
        w: torch.Tensor,
        phi: torch.Tensor,
        phi_t: torch.Tensor,
        phi_xx: torch.Tensor,
        phi_ic: torch.Tensor,
        u_ic: torch.Tensor,
    ) -> torch.Tensor:
        """The hard constraint ``F(w)`` of every expert: PDE rows then initial-condition rows.

        Args:
            w: ``(K, N)``.
            phi: ``(K, P, N)`` basis at constraint points; ``phi_t``, ``phi_xx`` likewise.
            phi_ic: ``(K, Q, N)`` basis at initial points.
            u_ic: ``(K, Q)`` initial values.

        Returns:
            ``(K, P + Q)``, scaled by ``1/√P`` and ``ic_weight/√Q``.
        """
        u = torch.einsum("kpn,kn->kp", phi, w)
        ut = torch.einsum("kpn,kn->kp", phi_t, w)
        uxx = torch.einsum("kpn,kn->kp", phi_xx, w)
        r = self.problem.residual(u, ut, uxx) / math.sqrt(phi.shape[1])
        ric = (torch.einsum("kqn,kn->kq", phi_ic, w) - u_ic) * (
            self.ic_weight / math.sqrt(phi_ic.shape[1])
        )
        return torch.cat([r, ric], dim=1)

    def solve(self, pde_pts: torch.Tensor, ic_pts: torch.Tensor) -> torch.Tensor:
        """Solve every expert's hard constraint (differentiable in the basis parameters).

        Args:
            pde_pts: ``(K, P, 2)`` constraint points.
            ic_pts: ``(K, Q, 2)`` initial points.

        Returns:
            ``w*`` ``(K, N)``; also stored (detached) as the warm start and for :meth:`forward`.
        """
        phi, phi_t, phi_xx = self.basis_terms(pde_pts)
        phi_ic, _, _ = self.basis(self._normalise(ic_pts), derivatives=False)
        u_ic = self.problem.initial(ic_pts[..., 0])
        w = hard_constraint_solve(
            self.constraint_residual,
            self.w.to(phi),
            phi,
            phi_t,
            phi_xx,
            phi_ic,
            u_ic,
            max_iter=self.lm_iter,
        )
        self.w = w.detach()
        return w

    def evaluate(self, pts: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """``u`` at arbitrary points, each evaluated by the expert owning its slab.

        Args:
            pts: ``(P, 2)`` points ``(x, t)``.
            w: weights ``(K, N)`` (default: the last solve's).

        Returns:
            ``(P,)``.
        """
        w = self.w if w is None else w
        idx = self.split(pts)
        xk = self._normalise(pts).unsqueeze(0).expand(self.K, -1, -1)
        phi, _, _ = self.basis(xk, derivatives=False)  # every expert at every point
        u_all = torch.einsum("kpn,kn->kp", phi, w.to(phi))
        return u_all.gather(0, idx.unsqueeze(0)).squeeze(0)

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
        train_pts: torch.Tensor,
        n_boundary: int = 32,
    ) -> dict[str, torch.Tensor]:
        """Training loss terms for the basis networks, given solved weights.

        Args:
            w: solved weights ``(K, N)`` (from :meth:`solve`, with graph).
            train_pts: ``(K, P, 2)`` residual points (not the constraint points).
            n_boundary: points in ``t`` on each interface and on the periodic boundary.

        Returns:
            ``{"pde", "interface", "periodic"}``: mean squared PDE residual; mismatch of ``u``
            and ``u_x`` between neighbouring experts; mismatch of ``u`` and ``u_x`` between
            ``x = 0`` (expert 0) and ``x = 2π`` (expert ``K − 1``).
        """
        phi, phi_t, phi_xx = self.basis_terms(train_pts)
        u = torch.einsum("kpn,kn->kp", phi, w)
        r = self.problem.residual(
            u, torch.einsum("kpn,kn->kp", phi_t, w), torch.einsum("kpn,kn->kp", phi_xx, w)
        )
        dtype = phi.dtype
        t = torch.linspace(0.0, self.problem.t_end, n_boundary, dtype=dtype, device=phi.device)
        e = self.edges().to(phi)
        # left and right edge of every slab: (K, 2 n_boundary, 2)
        left = torch.stack([e[:-1, None].expand(-1, n_boundary), t.expand(self.K, -1)], -1)
        right = torch.stack([e[1:, None].expand(-1, n_boundary), t.expand(self.K, -1)], -1)
        pts = torch.cat([left, right], dim=1)
        val, d1, _ = self.basis(self._normalise(pts))
        if d1 is None:
            raise AssertionError("unreachable")  # pragma: no cover
        ux_scale = 2.0 / self.problem.upper[0]
        ub = torch.einsum("kpn,kn->kp", val, w)
        uxb = torch.einsum("kpn,kn->kp", d1[..., 0], w) * ux_scale
        uL, uR = ub[:, :n_boundary], ub[:, n_boundary:]
        uxL, uxR = uxb[:, :n_boundary], uxb[:, n_boundary:]
        zero = torch.zeros((), dtype=dtype, device=phi.device)
        inter = zero
        if self.K > 1:
            inter = ((uR[:-1] - uL[1:]) ** 2).mean() + ((uxR[:-1] - uxL[1:]) ** 2).mean()
        per = ((uL[0] - uR[-1]) ** 2).mean() + ((uxL[0] - uxR[-1]) ** 2).mean()
        return {"pde": (r**2).mean(), "interface": inter, "periodic": per}


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
