"""NCLaw: neural constitutive laws inside a differentiable 2D MPM simulator.

The constitutive law is a network, but its *structure* carries the physics (Ma et al., ICML
2023), here in 2D:

- Elasticity :class:`ElasticLaw`: ``P(F) = R · sym(MLP(invariants(F)))`` with ``F = R S`` the
  polar decomposition (``R`` a rotation, ``S`` the symmetric stretch) and invariants
  ``(S − I, FᵀF − I, det F − 1)`` (the stretch ``S`` has the singular values ``σ`` of ``F`` as
  eigenvalues, so ``S − I`` carries ``σ − 1``). The invariants do not change under
  ``F → QF``, so ``P(QF) = Q P(F)`` for every rotation ``Q`` (frame indifference); they are
  zero at rest and the MLP has no biases and an activation with ``f(0) = 0``, so ``P(I) = 0``
  exactly (undeformed equilibrium).
- Plasticity :class:`PlasticityLaw`: a return mapping on the trial elastic deformation,
  ``F ↦ R (S + sym(MLP(invariants)))``, with the same two guarantees (equivariant, identity at
  rest).
- :class:`MPM2D`: a moving-least-squares material point method (quadratic B-splines, APIC
  transfer) written in batched torch, differentiable end to end. Particle-to-grid and
  grid-to-particle transfers conserve linear momentum exactly when there is no gravity and no
  wall.

The 2D polar rotation is computed in closed form (``R ∝ [[a + d, b − c], [c − b, a + d]]`` for
``F = [[a, b], [c, d]]``), smooth at ``F = I`` where SVD gradients are undefined.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from torchloom.core.checks import check_floating, check_int, check_positive

__all__ = [
    "MPM2D",
    "ElasticLaw",
    "MLPPlasticity",
    "MLPStress",
    "MPMState",
    "PlasticityLaw",
    "invariants",
    "lame",
    "neo_hookean_stress",
    "polar_rotation",
    "singular_values",
    "von_mises_projection",
]

StressFn = Callable[[torch.Tensor], torch.Tensor]


def _check_F(F: torch.Tensor) -> torch.Tensor:
    check_floating(F, "F")
    if F.dim() < 2 or F.shape[-2:] != (2, 2):
        raise ValueError(f"F must have shape (..., 2, 2), got {tuple(F.shape)}")
    return F


def polar_rotation(F: torch.Tensor) -> torch.Tensor:
    """Rotation factor ``R`` of the 2D polar decomposition ``F = R S`` (closed form).

    Args:
        F: deformation gradients ``(..., 2, 2)`` with ``det F > 0``.

    Returns:
        ``R`` of shape ``(..., 2, 2)``, ``RᵀR = I``, ``det R = 1``.
    """
    _check_F(F)
    a, b, c, d = F[..., 0, 0], F[..., 0, 1], F[..., 1, 0], F[..., 1, 1]
    p, q = a + d, c - b
    n = torch.sqrt(p**2 + q**2).clamp_min(torch.finfo(F.dtype).tiny)
    cos, sin = p / n, q / n
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _safe_norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sqrt(a² + b²)`` with gradient 0 (a subgradient) instead of NaN at ``a = b = 0``."""
    sq = a**2 + b**2
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), 0.0 * sq)


def singular_values(F: torch.Tensor) -> torch.Tensor:
    """Singular values of 2D matrices in closed form, largest first.

    ``σ₁,₂ = (√((a + d)² + (c − b)²) ± √((a − d)² + (b + c)²)) / 2`` for ``F = [[a, b], [c, d]]``
    (``σ₂`` is negative when ``det F < 0``); differentiable everywhere, with a zero subgradient
    where ``σ₁ = σ₂`` (e.g. at ``F = I``) instead of the NaN of an SVD backward.

    Args:
        F: ``(..., 2, 2)``.

    Returns:
        ``(..., 2)``.
    """
    _check_F(F)
    a, b, c, d = F[..., 0, 0], F[..., 0, 1], F[..., 1, 0], F[..., 1, 1]
    s = _safe_norm(a + d, c - b)
    t = _safe_norm(a - d, b + c)
    return torch.stack([0.5 * (s + t), 0.5 * (s - t)], -1)


def invariants(F: torch.Tensor, singular: bool = False) -> torch.Tensor:
    """Rotation-invariant features of ``F``, all zero at ``F = I``.

    Args:
        F: ``(..., 2, 2)``.
        singular: the authors' set, with the sorted singular values ``σ − 1`` (isotropic:
            unchanged by ``F → F Q`` as well) in place of the stretch entries ``S − I``.

    Returns:
        ``(..., 7)``: ``S − I`` (entries 11, 12, 22), ``FᵀF − I`` (11, 12, 22), ``det F − 1``;
        with ``singular`` ``(..., 6)``: ``σ₁ − 1``, ``σ₂ − 1``, ``FᵀF − I``, ``det F − 1``.
    """
    C = F.transpose(-1, -2) @ F
    J = torch.linalg.det(F)
    rest = [C[..., 0, 0] - 1, C[..., 0, 1], C[..., 1, 1] - 1, J - 1]
    if singular:
        sig = singular_values(F) - 1
        return torch.stack([sig[..., 0], sig[..., 1], *rest], -1)
    R = polar_rotation(F)
    S = R.transpose(-1, -2) @ F
    return torch.stack(
        [S[..., 0, 0] - 1, 0.5 * (S[..., 0, 1] + S[..., 1, 0]), S[..., 1, 1] - 1, *rest], -1
    )


def _sym(m: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [torch.stack([m[..., 0], m[..., 1]], -1), torch.stack([m[..., 1], m[..., 2]], -1)], -2
    )


class _NoBiasMLP(nn.Module):
    def __init__(self, d_in: int, d_out: int, width: int, depth: int) -> None:
        super().__init__()
        dims = [d_in] + [width] * depth + [d_out]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(dims)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = nn.functional.gelu(layer(x))  # gelu(0) = 0
        out: torch.Tensor = self.layers[-1](x)
        return out


class ElasticLaw(nn.Module):
    """NCLaw elasticity ``P(F) = R · sym(MLP(invariants(F))) · stress_scale``.

    Args:
        width: hidden width.
        depth: hidden layers.
        stress_scale: output scale (a stiffness unit; the MLP then learns O(1) values).
        singular: the authors' invariants (sorted ``σ − 1`` for ``S − I``, see
            :func:`invariants`).

    Shapes:
        F: ``(..., 2, 2)`` → first Piola–Kirchhoff stress ``(..., 2, 2)``.
    """

    def __init__(
        self, width: int = 64, depth: int = 2, stress_scale: float = 1.0, singular: bool = False
    ) -> None:
        super().__init__()
        check_int(width, "width")
        check_int(depth, "depth")
        self.stress_scale = check_positive(stress_scale, "stress_scale")
        self.singular = singular
        self.mlp = _NoBiasMLP(6 if singular else 7, 3, width, depth)

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        """First Piola–Kirchhoff stress.

        Args:
            F: ``(..., 2, 2)``.

        Returns:
            ``P`` of shape ``(..., 2, 2)``.
        """
        R = polar_rotation(F)
        return R @ _sym(self.mlp(invariants(F, self.singular))) * self.stress_scale


class PlasticityLaw(nn.Module):
    """NCLaw return mapping ``F ↦ F + α · R · sym(MLP(invariants(F)))``.

    ``F = R S`` is the polar decomposition of the trial elastic deformation, so this is
    ``R (S + α sym(MLP))``: equivariant (``Q F ↦ Q F'``) and the identity at rest (``I ↦ I``).
    The small scale ``α`` (the authors' ``alpha = 1e-3``) keeps the correction of one step small
    while the network's outputs stay O(1); the weights are Xavier-initialised as in the
    authors' code.

    Args:
        width: hidden width.
        depth: hidden layers.
        alpha: scale ``α > 0`` of the plastic correction.
        singular: the authors' invariants (sorted ``σ − 1`` for ``S − I``, see
            :func:`invariants`).

    Shapes:
        F: ``(..., 2, 2)`` trial elastic deformation → projected ``(..., 2, 2)``.
    """

    def __init__(
        self, width: int = 32, depth: int = 2, alpha: float = 1e-3, singular: bool = False
    ) -> None:
        super().__init__()
        check_int(width, "width")
        check_int(depth, "depth")
        self.alpha = check_positive(alpha, "alpha")
        self.singular = singular
        self.mlp = _NoBiasMLP(6 if singular else 7, 3, width, depth)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        """Project the trial elastic deformation.

        Args:
            F: ``(..., 2, 2)``.

        Returns:
            ``(..., 2, 2)``.
        """
        R = polar_rotation(F)
        return F + self.alpha * (R @ _sym(self.mlp(invariants(F, self.singular))))


def _vec_mlp(layers: nn.ModuleList, F: torch.Tensor, centered: bool = False) -> torch.Tensor:
    """The unconstrained baselines' network: GELU MLP on ``vec F`` (or ``vec(F − I)`` when
    ``centered``) ``(..., 4)``, reshaped back to ``(..., 2, 2)``."""
    _check_F(F)
    if centered:
        F = F - torch.eye(2, dtype=F.dtype, device=F.device)
    x = F.reshape(*F.shape[:-2], 4)
    for layer in layers[:-1]:
        x = nn.functional.gelu(layer(x))
    out: torch.Tensor = layers[-1](x)
    return out.reshape(F.shape)


def _baseline_layers(width: int, depth: int, rest_free: bool) -> nn.ModuleList:
    check_int(width, "width")
    check_int(depth, "depth")
    dims = [4] + [width] * depth + [4]
    return nn.ModuleList(nn.Linear(a, b, bias=not rest_free) for a, b in itertools.pairwise(dims))


class MLPStress(nn.Module):
    """Unconstrained baseline: ``P = MLP(vec F)`` with biases and no invariance structure.

    With ``rest_free=True`` it is the authors' plain baseline (``PlainMetaElasticity``):
    ``P = MLP(vec(F − I))`` without biases, stress-free at rest but not equivariant.

    Args:
        width: hidden width.
        depth: hidden layers.
        stress_scale: output scale.
        rest_free: no biases and input ``F − I`` (``P(I) = 0``).

    Shapes:
        F: ``(..., 2, 2)`` → ``(..., 2, 2)``.
    """

    def __init__(
        self, width: int = 64, depth: int = 2, stress_scale: float = 1.0, rest_free: bool = False
    ) -> None:
        super().__init__()
        self.layers = _baseline_layers(width, depth, rest_free)
        self.rest_free = rest_free
        self.stress_scale = check_positive(stress_scale, "stress_scale")

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        """Stress of the baseline.

        Args:
            F: ``(..., 2, 2)``.

        Returns:
            ``(..., 2, 2)``.
        """
        return _vec_mlp(self.layers, F, self.rest_free) * self.stress_scale


class MLPPlasticity(nn.Module):
    """Unconstrained plasticity baseline: ``F ↦ F + α · MLP(vec F)`` (biases, no structure).

    Neither equivariant nor the identity at rest (unlike :class:`PlasticityLaw`); the same
    scale ``α`` and Xavier initialisation as :class:`PlasticityLaw`. With ``rest_free=True``
    it is the authors' plain baseline (``PlainMetaPlasticity``): ``F + α · MLP(vec(F − I))``
    without biases, the identity at rest but not equivariant.

    Args:
        width: hidden width.
        depth: hidden layers.
        alpha: scale ``α > 0`` of the correction.
        rest_free: no biases and input ``F − I`` (``I ↦ I``).

    Shapes:
        F: ``(..., 2, 2)`` trial elastic deformation → projected ``(..., 2, 2)``.
    """

    def __init__(
        self, width: int = 32, depth: int = 2, alpha: float = 1e-3, rest_free: bool = False
    ) -> None:
        super().__init__()
        self.alpha = check_positive(alpha, "alpha")
        self.layers = _baseline_layers(width, depth, rest_free)
        self.rest_free = rest_free
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        """Project the trial elastic deformation.

        Args:
            F: ``(..., 2, 2)``.

        Returns:
            ``(..., 2, 2)``.
        """
        return F + self.alpha * _vec_mlp(self.layers, F, self.rest_free)


def neo_hookean_stress(F: torch.Tensor, mu: float, lam: float) -> torch.Tensor:
    """Compressible Neo-Hookean ``P = μ (F − F⁻ᵀ) + λ log(J) F⁻ᵀ``.

    Args:
        F: ``(..., 2, 2)`` with ``det F > 0``.
        mu: shear modulus.
        lam: Lamé's first parameter.

    Returns:
        ``(..., 2, 2)``.
    """
    _check_F(F)
    FinvT = torch.linalg.inv(F).transpose(-1, -2)
    J = torch.linalg.det(F)
    return mu * (F - FinvT) + lam * torch.log(J)[..., None, None] * FinvT


def von_mises_projection(F: torch.Tensor, mu: float, yield_stress: float) -> torch.Tensor:
    """Von Mises return mapping in Hencky strain (for generating plastic ground truth).

    Args:
        F: trial elastic deformation ``(..., 2, 2)``.
        mu: shear modulus.
        yield_stress: yield stress ``τ_Y``.

    Returns:
        Projected elastic deformation ``(..., 2, 2)``.
    """
    _check_F(F)
    U, sig, Vh = torch.linalg.svd(F)
    eps = torch.log(sig.clamp_min(1e-8))
    dev = eps - eps.mean(-1, keepdim=True)
    norm = dev.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    dgamma = norm - yield_stress / (2.0 * mu)
    eps = torch.where(dgamma > 0, eps - dgamma * dev / norm, eps)
    return U @ torch.diag_embed(torch.exp(eps)) @ Vh


@dataclass
class MPMState:
    """Particle state of :class:`MPM2D`.

    Attributes:
        x: positions ``(P, 2)`` in the unit square.
        v: velocities ``(P, 2)``.
        C: APIC affine velocity fields ``(P, 2, 2)``.
        F: deformation gradients ``(P, 2, 2)``.
    """

    x: torch.Tensor
    v: torch.Tensor
    C: torch.Tensor
    F: torch.Tensor

    @staticmethod
    def at_rest(x: torch.Tensor, v: torch.Tensor) -> MPMState:
        """Undeformed state (``C = 0``, ``F = I``) with positions ``x`` and velocities ``v``.

        Args:
            x: ``(P, 2)``.
            v: ``(P, 2)``.

        Returns:
            The state.
        """
        eye = torch.eye(2, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 2).clone()
        return MPMState(x, v, torch.zeros_like(eye), eye)

    def detach(self) -> MPMState:
        """The same state without autograd history.

        Returns:
            A detached :class:`MPMState`.
        """
        return MPMState(self.x.detach(), self.v.detach(), self.C.detach(), self.F.detach())


_OFFSETS = [(i, j) for i in range(3) for j in range(3)]


class MPM2D:
    """Moving-least-squares MPM in the unit square (quadratic B-splines, APIC).

    Args:
        n_grid: grid cells per side (``dx = 1 / n_grid``).
        dt: time step.
        p_vol: particle volume (default ``(dx / 2)²``, four particles per cell).
        density: material density (``p_mass = density · p_vol``).
        gravity: ``(g_x, g_y)``.
        walls: enforce separating walls ``bound`` cells from each side (off: free space, no
            external force, momentum conserved).
        bound: wall thickness in cells.
        clip_bound: if given, clamp particle positions to ``[c·dx, 1 − c·dx]`` after every step
            (as the authors' simulator does, so a diverging learned law cannot throw particles
            off the grid); must exceed 1.5 cells to keep the B-spline stencil on the grid.
    """

    def __init__(
        self,
        n_grid: int = 32,
        dt: float = 1e-3,
        p_vol: float | None = None,
        density: float = 1.0,
        gravity: tuple[float, float] = (0.0, -9.8),
        walls: bool = True,
        bound: int = 3,
        clip_bound: float | None = None,
    ) -> None:
        self.n = check_int(n_grid, "n_grid", minimum=4)
        self.dx = 1.0 / n_grid
        self.dt = check_positive(dt, "dt")
        self.p_vol = (self.dx * 0.5) ** 2 if p_vol is None else check_positive(p_vol, "p_vol")
        self.p_mass = check_positive(density, "density") * self.p_vol
        self.gravity = gravity
        self.walls = walls
        self.bound = bound
        if clip_bound is not None and not 1.5 < clip_bound < n_grid / 2:
            raise ValueError(f"clip_bound must lie in (1.5, n_grid / 2) cells, got {clip_bound}")
        self.clip_bound = clip_bound

    def step(
        self,
        s: MPMState,
        stress: StressFn,
        plasticity: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> MPMState:
        """One MPM step: particle-to-grid, grid update, grid-to-particle.

        Args:
            s: current state.
            stress: ``F (P, 2, 2) → P (P, 2, 2)`` first Piola–Kirchhoff stress.
            plasticity: optional return mapping applied to the updated ``F``.

        Returns:
            The next state.
        """
        n, dx, dt = self.n, self.dx, self.dt
        inv_dx = float(n)
        x, v, C, F = s.x, s.v, s.C, s.F
        Pn = x.shape[0]
        base = torch.floor(x.detach() * inv_dx - 0.5).long()
        if bool(((base < 0) | (base > n - 3)).any()):
            raise ValueError("particles left the grid; use walls=True or a larger domain margin")
        fx = x * inv_dx - base.to(x.dtype)
        w = torch.stack([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2])
        P = stress(F)
        tau = -dt * self.p_vol * 4.0 * inv_dx**2 * (P @ F.transpose(-1, -2))
        affine = tau + self.p_mass * C
        off = torch.tensor(_OFFSETS, device=x.device)  # (9, 2)
        wk = w[off[:, 0], :, 0] * w[off[:, 1], :, 1]  # (9, P)
        dpos = (off[:, None, :].to(x.dtype) - fx[None]) * dx  # (9, P, 2)
        idx = ((base[None] + off[:, None, :]) * torch.tensor([n, 1], device=x.device)).sum(-1)
        mom = wk[..., None] * (self.p_mass * v[None] + torch.einsum("pij,kpj->kpi", affine, dpos))
        grid_mv = torch.zeros(n * n, 2, dtype=x.dtype, device=x.device).index_add(
            0, idx.reshape(-1), mom.reshape(-1, 2)
        )
        grid_m = torch.zeros(n * n, dtype=x.dtype, device=x.device).index_add(
            0, idx.reshape(-1), (wk * self.p_mass).reshape(-1)
        )
        gv = grid_mv / grid_m.clamp_min(1e-12)[:, None]
        g = torch.tensor(self.gravity, dtype=x.dtype, device=x.device)
        gv = gv + dt * g * (grid_m > 0).to(x.dtype)[:, None]
        if self.walls:
            ij = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1)
            ij = ij.reshape(-1, 2).to(x.device)
            lo = (ij < self.bound) & (gv < 0)
            hi = (ij > n - 1 - self.bound) & (gv > 0)
            gv = torch.where(lo | hi, torch.zeros_like(gv), gv)
        gk = gv[idx]  # (9, P, 2)
        v_new = (wk[..., None] * gk).sum(0)
        C_new = 4.0 * inv_dx**2 * torch.einsum("kp,kpi,kpj->pij", wk, gk, dpos)
        x_new = x + dt * v_new
        if self.clip_bound is not None:
            x_new = x_new.clamp(self.clip_bound * dx, 1.0 - self.clip_bound * dx)
        eye = torch.eye(2, dtype=x.dtype, device=x.device)
        F_new = (eye + dt * C_new) @ F
        if plasticity is not None:
            F_new = plasticity(F_new)
        del Pn
        return MPMState(x_new, v_new, C_new, F_new)

    def rollout(
        self,
        s: MPMState,
        n_steps: int,
        stress: StressFn,
        plasticity: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[MPMState]:
        """``n_steps`` steps from ``s``.

        Args:
            s: initial state.
            n_steps: number of steps.
            stress: stress function.
            plasticity: optional return mapping.

        Returns:
            The ``n_steps + 1`` states, the initial one first.
        """
        check_int(n_steps, "n_steps", minimum=0)
        out = [s]
        for _ in range(n_steps):
            s = self.step(s, stress, plasticity)
            out.append(s)
        return out


def lame(E: float, nu: float) -> tuple[float, float]:
    """Lamé parameters ``(μ, λ)`` from Young's modulus and Poisson's ratio.

    Args:
        E: Young's modulus.
        nu: Poisson's ratio in ``(-1, 0.5)``.

    Returns:
        ``(μ, λ)``.
    """
    check_positive(E, "E")
    if not -1.0 < nu < 0.5:
        raise ValueError(f"nu must lie in (-1, 0.5), got {nu}")
    return E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
