"""Hard-constraint mixture of experts over a *family* of PDE instances (the paper's setting).

Chalapathi et al. do not fit one PDE instance: a network (an FNO in the paper) reads the
instance (its initial condition on a grid) and emits ``N`` basis functions; every expert then
solves its own hard constraint *for that instance* (PDE rows of its subdomain, the instance's
initial rows, the boundary rows and a ridge term) by Levenberg–Marquardt, and the network is
trained over many instances with the implicit-function-theorem gradient of each solve. At
inference a held-out instance gets its own constrained solves, so the hard-constrained model
adapts to it exactly, while a soft-constrained network must have learnt the whole solution
operator through its loss.

This module holds the instance-conditioned pieces:

- :class:`ConditionedMLP`: an MLP on ``(x, t)`` whose first layer is shifted by a learnt
  linear map of the instance features (a per-instance bias: the same as an MLP on the
  concatenation ``(x, t, features)``), with forward-mode (Taylor) input derivatives in
  ``(x, t)`` only;
- :class:`FamilyHardConstraintMoE`: the conditioned basis and the per-(instance, expert)
  constraint solves, batched as ``B · K`` independent least-squares problems through
  :func:`~torchloom.pinn.moe.hard_constraint_solve` (one implicit backward per instance and
  expert); ``K = 1`` with ``K N`` basis functions is one global hard constraint per instance;
- :class:`FamilySoftPINN`: the soft-constrained baseline on the same conditioned network;
- :class:`ReactionDiffusionFamily`: :class:`~torchloom.pinn.moe.ReactionDiffusion` with random
  Fourier initial conditions and a spectral Strang-splitting reference per instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive
from torchloom.pinn.moe import (
    Burgers,
    DiffusionSorption,
    ReactionDiffusion,
    boundary_misfit,
    constraint_rows,
    constraint_rows_jacobian,
    hard_constraint_solve,
)

__all__ = [
    "ConditionedMLP",
    "FamilyHardConstraintMoE",
    "FamilySoftPINN",
    "ReactionDiffusionFamily",
]

FamilyProblem = ReactionDiffusion | Burgers | DiffusionSorption


class ConditionedMLP(nn.Module):
    """``tanh`` MLP on points ``(x, t)`` conditioned on per-instance features, with derivatives.

    ``z₁ = p W₀ + (f V + b₀)``: the features ``f`` of instance ``b`` shift the first
    pre-activation at every one of its points (equal to an MLP on ``(p, f)``). Input
    derivatives in ``p`` are carried forward (Taylor mode), so first and pure second
    derivatives of all outputs cost a few extra matmuls; none are taken in ``f``.

    Args:
        d_in: point dimension ``D`` (2 for ``(x, t)``).
        n_features: feature dimension ``F``.
        d_out: outputs ``N``.
        width: hidden width.
        depth: hidden layers.

    Shapes:
        points ``(B, P, D)``, features ``(B, F)`` → values ``(B, P, N)``; derivatives
        ``(B, P, N, D)``.
    """

    def __init__(
        self, d_in: int, n_features: int, d_out: int, width: int = 32, depth: int = 2
    ) -> None:
        super().__init__()
        for name, v in (
            ("d_in", d_in),
            ("n_features", n_features),
            ("d_out", d_out),
            ("width", width),
            ("depth", depth),
        ):
            check_int(v, name)
        self.d_in, self.n_features, self.d_out = d_in, n_features, d_out
        self.inp = nn.Linear(d_in, width)
        self.cond = nn.Linear(n_features, width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.out = nn.Linear(width, d_out)
        for layer in [self.inp, self.cond, *self.hidden, self.out]:
            nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(
        self, points: torch.Tensor, features: torch.Tensor, derivatives: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Values and (optionally) first and pure second derivatives in the points.

        Args:
            points: ``(B, P, D)``.
            features: ``(B, F)``; instance ``b`` conditions ``points[b]``.
            derivatives: also return the derivatives.

        Returns:
            ``(u, du, d2u)``: ``(B, P, N)``, ``(B, P, N, D)``, ``(B, P, N, D)`` (``None``
            without ``derivatives``).
        """
        check_floating(points, "points")
        check_floating(features, "features")
        if points.dim() != 3 or points.shape[-1] != self.d_in:
            raise ValueError(f"points must have shape (B, P, {self.d_in}), got {points.shape}")
        if features.dim() != 2 or features.shape != (points.shape[0], self.n_features):
            raise ValueError(
                f"features must have shape (B={points.shape[0]}, F={self.n_features}), "
                f"got {tuple(features.shape)}"
            )
        z = self.inp(points) + self.cond(features).unsqueeze(1)
        dz = d2z = None
        if derivatives:
            B, P = points.shape[:2]
            dz = self.inp.weight.expand(B, P, -1, -1)  # ∂z_j/∂p_d = W₀[j, d]
            d2z = torch.zeros_like(dz)
        for layer in [*self.hidden, self.out]:
            a = torch.tanh(z)
            s = 1.0 - a**2
            if dz is not None and d2z is not None:
                dh = s.unsqueeze(-1) * dz
                d2h = s.unsqueeze(-1) * d2z - 2.0 * (a * s).unsqueeze(-1) * dz**2
                dz = torch.einsum("bpjd,oj->bpod", dh, layer.weight)
                d2z = torch.einsum("bpjd,oj->bpod", d2h, layer.weight)
            z = layer(a)
        return z, dz, d2z


def _box(problem: FamilyProblem, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo = torch.tensor(problem.lower, dtype=ref.dtype, device=ref.device)
    hi = torch.tensor(problem.upper, dtype=ref.dtype, device=ref.device)
    return lo, hi


class _FamilyBase(nn.Module):
    """Shared plumbing: normalised inputs and ``(u, u_t, u_x, u_xx)`` of a conditioned net."""

    problem: FamilyProblem
    net: ConditionedMLP

    def _check_features(self, features: torch.Tensor) -> None:
        check_floating(features, "features")
        F = self.net.n_features
        if features.dim() != 2 or features.shape[1] != F:
            raise ValueError(f"features must have shape (B, F={F}), got {tuple(features.shape)}")

    def _terms(
        self, pts: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network outputs and their ``t``, ``x``, ``xx`` derivatives at ``pts (B, ..., 2)``."""
        lo, hi = _box(self.problem, pts)
        scale = 2.0 / (hi - lo)
        B, lead = pts.shape[0], pts.shape[1:-1]
        v, d1, d2 = self.net((2.0 * (pts - lo) / (hi - lo) - 1.0).reshape(B, -1, 2), features)
        if d1 is None or d2 is None:  # pragma: no cover
            raise AssertionError("unreachable")
        shape = (B, *lead, v.shape[-1])
        return (
            v.reshape(shape),
            (d1[..., 1] * scale[1]).reshape(shape),
            (d1[..., 0] * scale[0]).reshape(shape),
            (d2[..., 0] * scale[0] ** 2).reshape(shape),
        )

    def _values(self, pts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        lo, hi = _box(self.problem, pts)
        B, lead = pts.shape[0], pts.shape[1:-1]
        v, _, _ = self.net(
            (2.0 * (pts - lo) / (hi - lo) - 1.0).reshape(B, -1, 2), features, derivatives=False
        )
        return v.reshape(B, *lead, v.shape[-1])


class FamilyHardConstraintMoE(_FamilyBase):
    """PI-HC-MoE over a family of instances: a conditioned basis, per-(instance, expert) solves.

    The basis ``φ_θ(x, t; f_b) ∈ R^N`` depends on the instance features ``f_b`` (its initial
    condition on a sensor grid). The ``x`` range is split into ``K`` slabs; for instance ``b``
    expert ``k`` solves for ``w_{b,k}`` so that ``u = φᵀ w_{b,k}`` satisfies the discretised PDE
    at its slab's constraint points, the instance's initial rows (the whole initial condition,
    or only its slab's with ``initial_rows="local"``), the boundary rows and a ridge term
    ``ridge · w``. The ``B K`` least-squares problems are independent and are solved in one
    batched :func:`~torchloom.pinn.moe.hard_constraint_solve` (Levenberg–Marquardt forward,
    implicit-function-theorem backward per problem). ``K = 1`` is one global hard constraint.

    Args:
        problem: a 1D time-dependent problem of :mod:`torchloom.pinn.moe` (its PDE and boundary
            conditions; the initial condition comes with every instance).
        n_features: instance feature dimension ``F``.
        n_experts: ``K``.
        n_basis: basis functions ``N``.
        width: hidden width of the basis network.
        depth: hidden layers.
        ic_weight: weight of the initial rows.
        bc_weight: weight of the boundary rows.
        ridge: ridge weight (the paper: ``10⁻⁴``).
        lm_iter: Levenberg–Marquardt iterations per solve.
        lm_tol: stop a solve when every gradient norm ``‖J_Fᵀ F‖`` is below this.
        hessian: implicit-backward Hessian (see :func:`~torchloom.pinn.moe.hard_constraint_solve`).
        initial_rows: ``"global"`` or ``"local"`` (each expert only its own slab's initial
            points; their number must then be a multiple of ``K``).
    """

    def __init__(
        self,
        problem: FamilyProblem,
        n_features: int,
        n_experts: int = 4,
        n_basis: int = 16,
        width: int = 32,
        depth: int = 2,
        ic_weight: float = 10.0,
        bc_weight: float = 10.0,
        ridge: float = 1e-4,
        lm_iter: int = 25,
        lm_tol: float = 1e-10,
        hessian: Literal["exact", "gauss_newton"] = "exact",
        initial_rows: Literal["global", "local"] = "global",
    ) -> None:
        super().__init__()
        check_int(n_experts, "n_experts")
        check_int(n_basis, "n_basis")
        if initial_rows not in ("global", "local"):
            raise ValueError(f"initial_rows must be 'global' or 'local', got {initial_rows!r}")
        if hessian not in ("exact", "gauss_newton"):
            raise ValueError(f"hessian must be 'exact' or 'gauss_newton', got {hessian!r}")
        self.problem = problem
        self.K, self.N = n_experts, n_basis
        self.net = ConditionedMLP(2, n_features, n_basis, width, depth)
        self.ic_weight = check_positive(ic_weight, "ic_weight")
        self.bc_weight = check_positive(bc_weight, "bc_weight")
        self.ridge = check_positive(ridge, "ridge", strict=False)
        self.lm_iter = check_int(lm_iter, "lm_iter")
        self.lm_tol = check_positive(lm_tol, "lm_tol", strict=False)
        self.hessian: Literal["exact", "gauss_newton"] = hessian
        self.initial_rows: Literal["global", "local"] = initial_rows

    def edges(self) -> torch.Tensor:
        """Slab boundaries in ``x``, ``(K + 1,)`` (float64)."""
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        return torch.linspace(lo, hi, self.K + 1, dtype=torch.float64)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Expert index of every position (by its ``x`` slab).

        Args:
            x: positions, any shape.

        Returns:
            Long tensor of the same shape in ``[0, K)``.
        """
        e = self.edges().to(x)
        return torch.bucketize(x.contiguous(), e[1:-1], right=True)

    def sample_points(
        self, n_per_expert: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform constraint points in every slab (shared by the instances of a batch).

        Args:
            n_per_expert: points per expert.
            generator: randomness.

        Returns:
            ``(K, n_per_expert, 2)`` points ``(x, t)`` (float64, CPU).
        """
        check_int(n_per_expert, "n_per_expert")
        e = self.edges()
        u = torch.rand(self.K, n_per_expert, 2, generator=generator, dtype=torch.float64)
        x = e[:-1, None] + u[..., 0] * (e[1:] - e[:-1])[:, None]
        return torch.stack([x, u[..., 1] * self.problem.t_end], -1)

    def constraint_residual(self, w: torch.Tensor, *aux: torch.Tensor) -> torch.Tensor:
        """Every (instance, expert) hard constraint ``F(w)``: PDE, initial, boundary, ridge rows.

        Args:
            w: ``(E, N)`` with ``E = B K``.
            *aux: ``phi, phi_t, phi_x, phi_xx`` ``(E, P, N)`` at the expert's constraint points;
                ``phi_ic`` ``(E, Q, N)`` and ``u_ic`` ``(E, Q)`` (initial rows); ``phi_l``,
                ``phi_lx``, ``phi_r``, ``phi_rx`` ``(E, T, N)`` at the two ends; ``g_bc``
                ``(E, 2T)`` right-hand sides of the boundary rows (unused when periodic).

        Returns:
            ``(E, P + Q + 2T + N)``: PDE rows ``/ √P``, initial rows ``· ic_weight / √Q``,
            boundary rows ``· bc_weight / √T``, ``ridge · w``.
        """
        bc_scale = self.bc_weight / math.sqrt(aux[6].shape[1])  # phi_l: (E, T, N)
        return constraint_rows(
            self.problem, w, aux, ic_weight=self.ic_weight, bc_scale=bc_scale, ridge=self.ridge
        )

    def constraint_jacobian(self, w: torch.Tensor, *aux: torch.Tensor) -> torch.Tensor:
        """Analytic ``∂F/∂w`` of :meth:`constraint_residual`.

        Args:
            w: ``(E, N)``.
            *aux: as in :meth:`constraint_residual`.

        Returns:
            ``(E, P + Q + 2T + N, N)``.
        """
        bc_scale = self.bc_weight / math.sqrt(aux[6].shape[1])
        return constraint_rows_jacobian(
            self.problem, w, aux, ic_weight=self.ic_weight, bc_scale=bc_scale, ridge=self.ridge
        )

    def _boundary_pts(self, bc_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        return (
            torch.stack([torch.full_like(bc_t, lo), bc_t], -1),
            torch.stack([torch.full_like(bc_t, hi), bc_t], -1),
        )

    def _check_solve_inputs(
        self,
        features: torch.Tensor,
        pde_pts: torch.Tensor,
        ic_pts: torch.Tensor,
        u_ic: torch.Tensor,
    ) -> None:
        self._check_features(features)
        if pde_pts.dim() != 3 or pde_pts.shape[0] != self.K or pde_pts.shape[2] != 2:
            raise ValueError(f"pde_pts must have shape (K={self.K}, P, 2), got {pde_pts.shape}")
        if ic_pts.dim() != 2 or ic_pts.shape[1] != 2:
            raise ValueError(f"ic_pts must have shape (Q, 2), got {tuple(ic_pts.shape)}")
        if u_ic.shape != (features.shape[0], ic_pts.shape[0]):
            raise ValueError(
                f"u_ic must have shape (B={features.shape[0]}, Q={ic_pts.shape[0]}), "
                f"got {tuple(u_ic.shape)}"
            )
        if self.initial_rows == "local":
            counts = torch.bincount(self.split(ic_pts[:, 0]), minlength=self.K)
            if bool((counts != counts[0]).any()):
                raise ValueError(
                    f"initial_rows='local' needs the same number of ic_pts per slab, "
                    f"got {counts.tolist()}"
                )

    def constraint_inputs(
        self,
        features: torch.Tensor,
        pde_pts: torch.Tensor,
        ic_pts: torch.Tensor,
        u_ic: torch.Tensor,
        bc_t: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The ``aux`` tensors of :meth:`constraint_residual` for every (instance, expert).

        Args:
            features: ``(B, F)`` instance features.
            pde_pts: ``(K, P, 2)`` constraint points, ``pde_pts[k]`` in slab ``k`` (the same for
                every instance).
            ic_pts: ``(Q, 2)`` initial points (``t = t₀``).
            u_ic: ``(B, Q)`` each instance's initial values there.
            bc_t: ``(T,)`` boundary times.

        Returns:
            Eleven tensors with leading dimension ``E = B K`` (instance-major: row
            ``b K + k`` is instance ``b``, expert ``k``), in the order of
            :meth:`constraint_residual`.
        """
        self._check_solve_inputs(features, pde_pts, ic_pts, u_ic)
        B, K, N = features.shape[0], self.K, self.N
        E = B * K
        P = pde_pts.shape[1]
        phi, phi_t, phi_x, phi_xx = self._terms(
            pde_pts.reshape(1, -1, 2).expand(B, -1, -1), features
        )
        if self.initial_rows == "local":
            order = torch.argsort(self.split(ic_pts[:, 0]), stable=True)
            ic_k = ic_pts[order].reshape(K, -1, 2)
            phi_ic = self._values(ic_k.reshape(1, -1, 2).expand(B, -1, -1), features)
            phi_ic = phi_ic.reshape(E, -1, N)
            u_ic_e = u_ic[:, order].reshape(E, -1)
        else:
            phi_ic = self._values(ic_pts.unsqueeze(0).expand(B, -1, -1), features)
            phi_ic = phi_ic.repeat_interleave(K, 0)
            u_ic_e = u_ic.repeat_interleave(K, 0)
        left, right = self._boundary_pts(bc_t)
        ends = torch.cat([left, right]).unsqueeze(0).expand(B, -1, -1)
        bv, _, bx, _ = self._terms(ends, features)
        T = bc_t.shape[0]
        g = self.problem.boundary_value(bc_t)
        g = (torch.cat([g, g]) if g.shape[0] == T else g).to(phi).expand(E, -1)
        return (
            *(a.reshape(E, P, N) for a in (phi, phi_t, phi_x, phi_xx)),
            phi_ic,
            u_ic_e,
            bv[:, :T].repeat_interleave(K, 0),
            bx[:, :T].repeat_interleave(K, 0),
            bv[:, T:].repeat_interleave(K, 0),
            bx[:, T:].repeat_interleave(K, 0),
            g,
        )

    def solve(
        self,
        features: torch.Tensor,
        pde_pts: torch.Tensor,
        ic_pts: torch.Tensor,
        u_ic: torch.Tensor,
        bc_t: torch.Tensor,
        w0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Solve every (instance, expert) hard constraint, differentiably in the basis network.

        Args:
            features: ``(B, F)`` instance features.
            pde_pts: ``(K, P, 2)`` constraint points, ``pde_pts[k]`` in slab ``k`` (the same for
                every instance).
            ic_pts: ``(Q, 2)`` initial points (``t = t₀``).
            u_ic: ``(B, Q)`` each instance's initial values there.
            bc_t: ``(T,)`` boundary times.
            w0: optional warm start ``(B, K, N)`` (default zeros).

        Returns:
            ``w*`` of shape ``(B, K, N)``.
        """
        aux = self.constraint_inputs(features, pde_pts, ic_pts, u_ic, bc_t)
        B, K, N = features.shape[0], self.K, self.N
        if w0 is None:
            start = torch.zeros(B * K, N, dtype=aux[0].dtype, device=aux[0].device)
        elif w0.shape != (B, K, N):
            raise ValueError(f"w0 must have shape (B={B}, K={K}, N={N}), got {tuple(w0.shape)}")
        else:
            start = w0.reshape(B * K, N).detach().to(aux[0])
        w = hard_constraint_solve(
            self.constraint_residual,
            start,
            *aux,
            max_iter=self.lm_iter,
            tol=self.lm_tol,
            jac=self.constraint_jacobian,
            hessian=self.hessian,
        )
        return w.reshape(B, K, N)

    def evaluate(self, pts: torch.Tensor, features: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The assembled solution: every point uses the weights of its slab's expert.

        Args:
            pts: ``(P, 2)`` points ``(x, t)`` (shared by the instances).
            features: ``(B, F)``.
            w: ``(B, K, N)`` solved weights.

        Returns:
            ``(B, P)``.
        """
        self._check_features(features)
        if w.shape != (features.shape[0], self.K, self.N):
            raise ValueError(
                f"w must have shape (B={features.shape[0]}, K={self.K}, N={self.N}), "
                f"got {tuple(w.shape)}"
            )
        phi = self._values(pts.unsqueeze(0).expand(features.shape[0], -1, -1), features)
        idx = self.split(pts[:, 0])
        return torch.einsum("bpn,bpn->bp", phi, w[:, idx])

    def losses(
        self,
        w: torch.Tensor,
        features: torch.Tensor,
        pde_pts: torch.Tensor,
        ic_pts: torch.Tensor,
        u_ic: torch.Tensor,
        n_boundary: int = 32,
    ) -> dict[str, torch.Tensor]:
        """Training loss of the basis network given the solved weights (mean over instances).

        Args:
            w: ``(B, K, N)`` from :meth:`solve` (with graph).
            features: ``(B, F)``.
            pde_pts: ``(K, P, 2)`` residual points (the authors take the loss on the grid the
                constraint points are drawn from: pass the constraint points).
            ic_pts: ``(Q, 2)`` initial points; ``u_ic`` ``(B, Q)`` the initial values.
            u_ic: ``(B, Q)``.
            n_boundary: times on every interface and boundary.

        Returns:
            ``{"pde", "interface", "boundary", "ic"}``: mean squared PDE residual of each
            expert's solution on its slab, ``u``/``u_x`` mismatch between neighbouring experts at
            the slab interfaces, boundary misfit and initial misfit of the assembled solution.
        """
        B, K = features.shape[0], self.K
        pts = pde_pts.reshape(1, -1, 2).expand(B, -1, -1)
        terms = self._terms(pts, features)
        we = w.repeat_interleave(pde_pts.shape[1], 1)  # (B, K P, N): each point its expert
        u, ut, ux, uxx = (torch.einsum("bpn,bpn->bp", b, we) for b in terms)
        pde = (self.problem.pde(u, ut, ux, uxx) ** 2).mean()
        dtype, dev = w.dtype, w.device
        t = torch.linspace(0.0, self.problem.t_end, n_boundary, dtype=dtype, device=dev)
        inter = torch.zeros((), dtype=dtype, device=dev)
        if K > 1:
            e = self.edges().to(w)[1:-1]
            ip = torch.stack([e[:, None].expand(-1, n_boundary), t.expand(K - 1, -1)], -1)
            v, _, vx, _ = self._terms(ip.reshape(1, -1, 2).expand(B, -1, -1), features)
            dw = (w[:, :-1] - w[:, 1:]).repeat_interleave(n_boundary, 1)
            inter = (torch.einsum("bpn,bpn->bp", v, dw) ** 2).mean() + (
                torch.einsum("bpn,bpn->bp", vx, dw) ** 2
            ).mean()
        left, right = self._boundary_pts(t)
        bv, _, bx, _ = self._terms(
            torch.cat([left, right]).unsqueeze(0).expand(B, -1, -1), features
        )
        T = n_boundary
        ul = torch.einsum("btn,bn->bt", bv[:, :T], w[:, 0])
        ur = torch.einsum("btn,bn->bt", bv[:, T:], w[:, -1])
        uxl = torch.einsum("btn,bn->bt", bx[:, :T], w[:, 0])
        uxr = torch.einsum("btn,bn->bt", bx[:, T:], w[:, -1])
        bnd = boundary_misfit(self.problem, ul, uxl, ur, uxr, self.problem.boundary_value(t))
        u0 = self.evaluate(ic_pts, features, w)
        ic = ((u0 - u_ic) ** 2).mean()
        return {"pde": pde, "interface": inter, "boundary": bnd, "ic": ic}


class FamilySoftPINN(_FamilyBase):
    """Soft-constrained PINN over a family: ``u(x, t; f)`` from the same conditioned network.

    Args:
        problem: the problem (PDE and boundary conditions).
        n_features: instance feature dimension ``F``.
        width: hidden width.
        depth: hidden layers.
    """

    def __init__(
        self, problem: FamilyProblem, n_features: int, width: int = 32, depth: int = 3
    ) -> None:
        super().__init__()
        self.problem = problem
        self.net = ConditionedMLP(2, n_features, 1, width, depth)

    def forward(self, pts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``u`` at points shared by the instances.

        Args:
            pts: ``(P, 2)``.
            features: ``(B, F)``.

        Returns:
            ``(B, P)``.
        """
        self._check_features(features)
        return self._values(pts.unsqueeze(0).expand(features.shape[0], -1, -1), features)[..., 0]

    def losses(
        self,
        features: torch.Tensor,
        pde_pts: torch.Tensor,
        ic_pts: torch.Tensor,
        u_ic: torch.Tensor,
        bc_t: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """PDE, initial and boundary misfits, mean over instances (the soft-constraint loss).

        Args:
            features: ``(B, F)``.
            pde_pts: ``(B, P, 2)`` residual points per instance.
            ic_pts: ``(Q, 2)`` initial points.
            u_ic: ``(B, Q)`` initial values.
            bc_t: ``(T,)`` boundary times.

        Returns:
            ``{"pde", "ic", "boundary"}`` mean squares.
        """
        self._check_features(features)
        u, ut, ux, uxx = (v[..., 0] for v in self._terms(pde_pts, features))
        pde = (self.problem.pde(u, ut, ux, uxx) ** 2).mean()
        ic = ((self(ic_pts, features) - u_ic) ** 2).mean()
        B, T = features.shape[0], bc_t.shape[0]
        lo, hi = self.problem.lower[0], self.problem.upper[0]
        ends = torch.cat(
            [
                torch.stack([torch.full_like(bc_t, lo), bc_t], -1),
                torch.stack([torch.full_like(bc_t, hi), bc_t], -1),
            ]
        )
        v, _, vx, _ = (
            a[..., 0] for a in self._terms(ends.unsqueeze(0).expand(B, -1, -1), features)
        )
        g = self.problem.boundary_value(bc_t)
        bnd = boundary_misfit(self.problem, v[:, :T], vx[:, :T], v[:, T:], vx[:, T:], g)
        return {"pde": pde, "ic": ic, "boundary": bnd}


@dataclass(frozen=True)
class ReactionDiffusionFamily:
    """Reaction–diffusion instances with random Fourier initial conditions.

    ``u₀(x) = m + Σ_{k=1}^{M} (a_k cos kx + b_k sin kx)`` with ``m ~ U(m_lo, m_hi)`` and
    ``a_k, b_k ~ U(−A/k, A/k)``; the PDE is ``problem``'s (periodic on ``[0, 2π)``). An instance
    is its coefficient vector ``(m, a_1..a_M, b_1..b_M)``; its features are ``u₀`` at ``S``
    equispaced sensors (the grid input of the paper's FNO).

    Attributes:
        problem: the PDE (``ν``, ``ρ``, ``t_end``).
        n_modes: ``M``.
        mean_range: ``(m_lo, m_hi)``.
        amplitude: ``A``.
        n_sensors: ``S``.
    """

    problem: ReactionDiffusion = field(default_factory=ReactionDiffusion)
    n_modes: int = 3
    mean_range: tuple[float, float] = (0.2, 0.4)
    amplitude: float = 0.1
    n_sensors: int = 32

    def __post_init__(self) -> None:
        check_int(self.n_modes, "n_modes")
        check_int(self.n_sensors, "n_sensors")
        check_positive(self.amplitude, "amplitude", strict=False)
        if not self.mean_range[0] <= self.mean_range[1]:
            raise ValueError(f"mean_range must be (lo, hi) with lo <= hi, got {self.mean_range}")

    @property
    def n_coefficients(self) -> int:
        """Length ``1 + 2M`` of an instance's coefficient vector."""
        return 1 + 2 * self.n_modes

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Draw ``n`` instances.

        Args:
            n: number of instances.
            generator: randomness.
            dtype: floating dtype of the result.

        Returns:
            ``(n, 1 + 2M)`` coefficients ``(m, a, b)``.
        """
        check_int(n, "n")
        u = torch.rand(n, self.n_coefficients, generator=generator, dtype=torch.float64)
        lo, hi = self.mean_range
        k = torch.arange(1, self.n_modes + 1, dtype=torch.float64).repeat(2)
        m = lo + (hi - lo) * u[:, :1]
        ab = (2.0 * u[:, 1:] - 1.0) * self.amplitude / k
        return torch.cat([m, ab], 1).to(dtype)

    def _check(self, coef: torch.Tensor) -> None:
        check_floating(coef, "coef")
        if coef.dim() != 2 or coef.shape[1] != self.n_coefficients:
            raise ValueError(
                f"coef must have shape (B, {self.n_coefficients}), got {tuple(coef.shape)}"
            )

    def initial(self, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """``u₀`` of every instance at its positions.

        Args:
            x: ``(P,)`` shared positions or ``(B, P)``.
            coef: ``(B, 1 + 2M)``.

        Returns:
            ``(B, P)``.
        """
        self._check(coef)
        x = x.to(coef).expand(coef.shape[0], -1) if x.dim() == 1 else x.to(coef)
        M = self.n_modes
        kx = x.unsqueeze(-1) * torch.arange(1, M + 1, dtype=coef.dtype, device=coef.device)
        a, b = coef[:, None, 1 : 1 + M], coef[:, None, 1 + M :]
        return coef[:, :1] + (a * torch.cos(kx) + b * torch.sin(kx)).sum(-1)

    def sensors(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Sensor positions ``2π j / S``, ``(S,)``."""
        return 2.0 * math.pi * torch.arange(self.n_sensors, dtype=dtype) / self.n_sensors

    def features(self, coef: torch.Tensor) -> torch.Tensor:
        """``u₀`` at the sensors, the instance features.

        Args:
            coef: ``(B, 1 + 2M)``.

        Returns:
            ``(B, S)``.
        """
        return self.initial(self.sensors(coef.dtype).to(coef.device), coef)

    def reference(
        self, coef: torch.Tensor, nx: int = 128, nt: int = 1000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Classical reference of one instance: Fourier diffusion + exact logistic, Strang-split.

        Args:
            coef: ``(1 + 2M,)`` one instance.
            nx: grid points (``x_j = 2π j / nx``).
            nt: time steps.

        Returns:
            ``(x, t, u)``: ``(nx,)``, ``(nt + 1,)``, ``(nt + 1, nx)``.
        """
        check_int(nx, "nx", minimum=4)
        check_int(nt, "nt")
        pb = self.problem
        x = 2 * np.pi * np.arange(nx) / nx
        t = np.linspace(0.0, pb.t_end, nt + 1)
        dt = pb.t_end / nt
        k = np.fft.fftfreq(nx, d=1.0 / nx)
        decay = np.exp(-pb.nu * k**2 * dt / 2)
        e = np.exp(pb.rho * dt)
        u = self.initial(torch.from_numpy(x), coef.detach().cpu().double()[None])[0].numpy()
        out = [u]
        for _ in range(nt):
            u = np.real(np.fft.ifft(np.fft.fft(u) * decay))
            u = u * e / (1 - u + u * e)
            u = np.real(np.fft.ifft(np.fft.fft(u) * decay))
            out.append(u)
        return x, t, np.stack(out)
