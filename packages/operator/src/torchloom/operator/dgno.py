"""DGNO: a physics-aware generative neural operator (Zang & Koutsourelakis, 2024, paper #38).

Pieces, as in the paper:

- :class:`MultiONet` — a DeepONet whose output averages the inner products of *every* hidden
  layer of branch and trunk: ``u(x; β) = (1/L) Σ_k w_k ⟨b_k(β), t_k(x)⟩ + b`` (``w_k = 0`` at
  initialisation, as in the authors' code). Spatial gradients of the trunk are propagated in
  forward mode alongside its values, so ``∇ₓu`` at many points costs one extra pass, shared by
  the whole batch. Activations: ``tanh`` or the authors' ``tanh_sin``/``silu_sin``/``silu_id``.
- :func:`wendland` — the compactly supported radial basis function of Wendland,
  ``φ(r) = (1 − r)₊^{l+2} ((l²+4l+3) r² + (3l+6) r + 3) / 3`` with ``l = ⌊d/2⌋ + 3`` (C⁴, positive
  definite in ``ℝ^d``), used as test functions ``φ_j(x) = φ(|x − ξ_j| / R)``.
- :func:`darcy_weak_residual` — the weak-form residuals
  ``r_j = ∫_{B(ξ_j, R)} a ∇u·∇φ_j − f φ_j dx`` of ``−∇·(a∇u) = f``, by Gauss quadrature on the
  ball (:func:`ball_quadrature`); they act as *virtual observables* ``r_j = 0``. Training draws
  fresh centres every step (:meth:`TestFunctions.random_interior`). :func:`flux_weak_residual`
  is the mixed form ``∫ s·∇φ_j − f φ_j`` for a decoded flux ``s ≈ a∇u``.
- :class:`DGNO` — the generative latent model: encoder ``β = E(a)`` (Dirac posterior), decoders
  ``a(x; β)`` and ``u(x; β)`` (MultiONets), homogeneous Dirichlet boundary by the mollifier
  ``Π x_i (1 − x_i)``; :func:`dgno_loss` is the negative ELBO (coefficient reconstruction,
  virtual-observable likelihood, labelled data where present, standard normal prior on ``β``);
  :func:`dgno_inverse` recovers ``β`` — hence ``a`` — from sparse noisy observations of ``u``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from torchloom.core.checks import check_floating

__all__ = [
    "ACTIVATIONS",
    "DGNO",
    "MultiONet",
    "TestFunctions",
    "ball_quadrature",
    "darcy_weak_residual",
    "dgno_inverse",
    "dgno_loss",
    "flux_weak_residual",
    "grid_lookup",
    "wendland",
    "wendland_order",
]


def wendland_order(d: int) -> int:
    """The paper's ``l = ⌊d/2⌋ + 3`` for dimension ``d``."""
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    return d // 2 + 3


def wendland(r: torch.Tensor, d: int = 2) -> torch.Tensor:
    """Wendland's CSRBF ``φ(r) = (1−r)₊^{l+2} ((l²+4l+3) r² + (3l+6) r + 3) / 3``, ``φ(0) = 1``.

    Args:
        r: radii ``|x − ξ| / R``, any shape, ``r >= 0``.
        d: space dimension (sets ``l = ⌊d/2⌋ + 3``).

    Returns:
        ``φ(r)``, same shape; exactly zero for ``r >= 1``.
    """
    r = check_floating(r, "r")
    lo = wendland_order(d)
    c = (1 - r).clamp_min(0)
    return c ** (lo + 2) * ((lo * lo + 4 * lo + 3) * r**2 + (3 * lo + 6) * r + 3) / 3


def _wendland_dr_over_r(r: torch.Tensor, d: int) -> torch.Tensor:
    # φ'(r) / r = −(l+3)(l+4)/3 · (1−r)₊^{l+1} ((l+1) r + 1): finite at r = 0
    lo = wendland_order(d)
    c = (1 - r).clamp_min(0)
    return -(lo + 3) * (lo + 4) / 3 * c ** (lo + 1) * ((lo + 1) * r + 1)


def ball_quadrature(
    d: int = 2, n_radial: int = 6, n_angular: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss quadrature on the unit ball: points ``(Q, d)`` and weights ``(Q,)`` (float64).

    ``d = 1``: Gauss-Legendre on ``[−1, 1]``; ``d = 2``: Gauss-Legendre in the radius (weight
    ``r``) times the trapezoid rule in the angle, exact for polynomials of radial degree
    ``< 2 n_radial − 1`` and trigonometric degree ``< n_angular``.

    Args:
        d: dimension (1 or 2).
        n_radial: radial nodes (``d = 1``: the number of nodes).
        n_angular: angular nodes (``d = 2``).

    Returns:
        ``(points, weights)``; the weights sum to the ball's volume.
    """
    if n_radial < 1 or n_angular < 1:
        raise ValueError(f"n_radial, n_angular must be >= 1, got {n_radial}, {n_angular}")
    xg, wg = np.polynomial.legendre.leggauss(n_radial)
    if d == 1:
        return torch.from_numpy(xg)[:, None], torch.from_numpy(wg)
    if d != 2:
        raise ValueError(f"d must be 1 or 2, got {d}")
    r = (xg + 1) / 2
    wr = wg / 2 * r
    th = 2 * np.pi * np.arange(n_angular) / n_angular
    pts = np.stack([np.outer(r, np.cos(th)).ravel(), np.outer(r, np.sin(th)).ravel()], axis=1)
    w = np.outer(wr, np.full(n_angular, 2 * np.pi / n_angular)).ravel()
    return torch.from_numpy(pts), torch.from_numpy(w)


@dataclass
class TestFunctions:
    """Wendland test functions ``φ_j(x) = φ(|x − ξ_j| / R)`` with their quadrature points.

    ``points`` ``(J, Q, d)``, ``weights`` ``(J, Q)`` (include ``R^d``), ``phi`` ``(J, Q)`` and
    ``grad_phi`` ``(J, Q, d)`` at the points. Build with :meth:`make`.
    """

    __test__ = False  # not a pytest class despite the name

    centers: torch.Tensor
    radius: float
    points: torch.Tensor
    weights: torch.Tensor
    phi: torch.Tensor
    grad_phi: torch.Tensor

    @classmethod
    def make(
        cls,
        centers: torch.Tensor,
        radius: float,
        *,
        n_radial: int = 6,
        n_angular: int = 16,
    ) -> TestFunctions:
        """Test functions centred at ``centers`` ``(J, d)`` with support radius ``radius``.

        Args:
            centers: centres ``ξ_j`` ``(J, d)``.
            radius: support radius ``R``.
            n_radial: radial quadrature nodes.
            n_angular: angular quadrature nodes.

        Returns:
            the test functions, float64 on ``centers``' device.
        """
        centers = check_floating(centers, "centers").double()
        if centers.ndim != 2:
            raise ValueError(f"centers must have shape (J, d), got {tuple(centers.shape)}")
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        d = centers.shape[1]
        s, w = ball_quadrature(d, n_radial, n_angular)
        s, w = s.to(centers.device), w.to(centers.device)
        pts = centers[:, None, :] + radius * s[None]
        r = s.norm(dim=-1)
        phi = wendland(r, d).expand(len(centers), -1)
        grad = (_wendland_dr_over_r(r, d)[:, None] * s / radius).expand(len(centers), -1, -1)
        weights = (w * radius**d).expand(len(centers), -1)
        return cls(centers, float(radius), pts, weights, phi, grad)

    @classmethod
    def random_interior(
        cls,
        count: int,
        radius: float,
        *,
        generator: torch.Generator | None = None,
        **kw: int,
    ) -> TestFunctions:
        """``count`` centres uniform in ``[R, 1 − R]²``, redrawn per step in training.

        The authors' code samples fresh test-function centres at every optimisation step
        (as in ParticleWNN), so the virtual observables cover the whole domain over training.

        Args:
            count: number of test functions ``J``.
            radius: support radius ``R < 1/2``.
            generator: randomness of the centres.
            **kw: quadrature sizes passed to :meth:`make`.

        Returns:
            the test functions (float64).
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not 0 < radius < 0.5:
            raise ValueError(f"radius must be in (0, 0.5), got {radius}")
        c = radius + (1 - 2 * radius) * torch.rand(
            count, 2, generator=generator, dtype=torch.float64
        )
        return cls.make(c, radius, **kw)

    def to(self, dtype: torch.dtype) -> TestFunctions:
        """A copy with every tensor cast to ``dtype``.

        Args:
            dtype: the floating dtype.

        Returns:
            the cast test functions.
        """
        return TestFunctions(
            self.centers.to(dtype),
            self.radius,
            self.points.to(dtype),
            self.weights.to(dtype),
            self.phi.to(dtype),
            self.grad_phi.to(dtype),
        )

    @classmethod
    def interior_grid(cls, per_side: int, radius: float, **kw: int) -> TestFunctions:
        """``per_side²`` centres on a uniform grid in ``[R, 1 − R]²`` (balls inside the square).

        Args:
            per_side: centres per direction.
            radius: support radius ``R < 1/2``.
            **kw: quadrature sizes passed to :meth:`make`.

        Returns:
            the test functions.
        """
        if not 0 < radius < 0.5:
            raise ValueError(f"radius must be in (0, 0.5), got {radius}")
        c = torch.linspace(radius, 1 - radius, per_side, dtype=torch.float64)
        centers = torch.cartesian_prod(c, c)
        return cls.make(centers, radius, **kw)


def darcy_weak_residual(
    a: torch.Tensor,
    grad_u: torch.Tensor,
    f: torch.Tensor | float,
    tf: TestFunctions,
) -> torch.Tensor:
    """Weak residuals ``r_j = Σ_q w_q (a ∇u·∇φ_j − f φ_j)`` of ``−∇·(a∇u) = f``.

    Args:
        a: coefficient at the quadrature points ``(B, J, Q)``.
        grad_u: ``∇u`` at the points ``(B, J, Q, d)``.
        f: source at the points ``(B, J, Q)`` or a constant.
        tf: the test functions (balls inside the domain, so no boundary terms).

    Returns:
        ``(B, J)`` residuals.
    """
    w = tf.weights.to(grad_u)
    flux = (a[..., None] * grad_u * tf.grad_phi.to(grad_u)).sum(-1)
    return ((flux - f * tf.phi.to(grad_u)) * w).sum(-1)


def flux_weak_residual(
    flux: torch.Tensor,
    f: torch.Tensor | float,
    tf: TestFunctions,
) -> torch.Tensor:
    """Weak residuals ``r_j = Σ_q w_q (s·∇φ_j − f φ_j)`` of ``−∇·s = f`` (mixed form, s = a∇u).

    Args:
        flux: the flux ``s`` at the quadrature points ``(B, J, Q, d)``.
        f: source at the points ``(B, J, Q)`` or a constant.
        tf: the test functions.

    Returns:
        ``(B, J)`` residuals; with ``s = a∇u`` equal to :func:`darcy_weak_residual`.
    """
    w = tf.weights.to(flux)
    return (((flux * tf.grad_phi.to(flux)).sum(-1) - f * tf.phi.to(flux)) * w).sum(-1)


def grid_lookup(field: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Nearest-node values of grid functions at points of the unit square.

    Args:
        field: ``(B, n, n)`` values on the interior nodes ``((i+1)h, (j+1)h)``, ``h = 1/(n+1)``;
            index ``[i, j]`` is ``(x₀, x₁) = (i+1, j+1) h``.
        x: points ``(..., 2)`` in ``[0, 1]²``.

    Returns:
        ``(B, ...)`` values (nodes beyond the boundary clamp to the nearest interior node).
    """
    n = field.shape[-1]
    idx = (x * (n + 1)).round().long().clamp(1, n) - 1
    return field[:, idx[..., 0], idx[..., 1]]


def _act(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # activation value and derivative σ'(z), for forward-mode spatial gradients
    if name == "tanh":
        h = torch.tanh(z)
        return h, 1 - h * h
    if name in ("tanh_sin", "silu_sin"):
        # the authors' residual-oscillatory activations: g(sin(π(z + 1))) + z
        sn = torch.sin(math.pi * (z + 1))
        ds = math.pi * torch.cos(math.pi * (z + 1))
        if name == "tanh_sin":
            t = torch.tanh(sn)
            return t + z, (1 - t * t) * ds + 1
        sg = torch.sigmoid(sn)
        return sn * sg + z, sg * (1 + sn * (1 - sg)) * ds + 1
    if name == "silu_id":
        sg = torch.sigmoid(z)
        return z * sg + z, sg * (1 + z * (1 - sg)) + 1
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


ACTIVATIONS = ("tanh", "tanh_sin", "silu_sin", "silu_id")


class _MLP(nn.Module):
    """MLP returning every hidden layer, optionally with forward-mode ``∂/∂x_i``."""

    def __init__(self, d_in: int, width: int, depth: int, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.layers: list[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(d_in if i == 0 else width, width) for i in range(depth)
        )

    def forward(
        self, x: torch.Tensor, with_grad: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hs: list[torch.Tensor] = []
        gs: list[torch.Tensor] = []
        h = x
        # tangent of h along each input direction: (..., d_in, width_in)
        g = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand(*x.shape, x.shape[-1])
        for lin in self.layers:
            h, dh = _act(self.activation, lin(h))
            hs.append(h)
            if with_grad:
                g = dh[..., None, :] * (g @ lin.weight.T)
                gs.append(g)
        return hs, gs


class MultiONet(nn.Module):
    """MultiONet ``u(x; β) = (1/L) Σ_k w_k ⟨b_k(β), t_k(x)⟩ + b₀`` over all ``L`` hidden layers.

    Args:
        branch_in: dimension of the branch input ``β``.
        trunk_in: dimension ``d`` of ``x``.
        width: width of every hidden layer (shared by branch and trunk).
        depth: hidden layers ``L``.
        activation: trunk activation, one of :data:`ACTIVATIONS` — ``tanh`` or the authors'
            ``tanh_sin`` ``tanh(sin(π(z+1))) + z``, ``silu_sin`` ``silu(sin(π(z+1))) + z``,
            ``silu_id`` ``silu(z) + z``.
        branch_activation: branch activation (default: ``activation``).
    """

    def __init__(
        self,
        branch_in: int,
        trunk_in: int = 2,
        width: int = 64,
        depth: int = 4,
        activation: str = "tanh",
        branch_activation: str | None = None,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        self.branch = _MLP(branch_in, width, depth, branch_activation or activation)
        self.trunk = _MLP(trunk_in, width, depth, activation)
        self.w = nn.Parameter(torch.zeros(depth))  # authors: w_k = 0, output starts at b₀
        self.bias = nn.Parameter(torch.zeros(()))
        self.trunk_in = trunk_in

    def forward(self, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Evaluate at points shared by the batch.

        Args:
            beta: branch inputs ``(B, m)``.
            x: points ``(..., d)``.

        Returns:
            ``(B, ...)`` values.
        """
        return self.value_and_grad(beta, x, with_grad=False)[0]

    def value_and_grad(
        self, beta: torch.Tensor, x: torch.Tensor, with_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Values ``(B, ...)`` and spatial gradients ``(B, ..., d)`` (``None`` if not asked).

        Args:
            beta: branch inputs ``(B, m)``.
            x: points ``(..., d)`` shared by the batch.
            with_grad: also return ``∇ₓu``.

        Returns:
            ``(u, grad_u)``.
        """
        beta = check_floating(beta, "beta")
        x = check_floating(x, "x")
        if x.shape[-1] != self.trunk_in:
            raise ValueError(f"x must end in dimension {self.trunk_in}, got {tuple(x.shape)}")
        bs, _ = self.branch(beta)
        ts, gs = self.trunk(x, with_grad)
        lead = x.shape[:-1]
        depth = len(bs)
        u = (
            sum(wk * (t.reshape(-1, t.shape[-1]) @ b.T).T for wk, b, t in zip(self.w, bs, ts))
            / depth
            + self.bias
        )
        u = u.reshape(beta.shape[0], *lead)  # type: ignore[union-attr]
        if not with_grad:
            return u, None
        d = x.shape[-1]
        g = (
            sum(
                wk * torch.einsum("pdw,bw->bpd", gt.reshape(-1, d, gt.shape[-1]), b)
                for wk, b, gt in zip(self.w, bs, gs)
            )
            / depth
        )
        return u, g.reshape(beta.shape[0], *lead, d)  # type: ignore[union-attr]


def _mollifier(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # m(x) = Π 4 x_i (1 − x_i) vanishes on the boundary of the unit cube; returns (m, ∇m)
    s = 4 * x * (1 - x)
    ds = 4 * (1 - 2 * x)
    m = s.prod(-1)
    grads = []
    for i in range(x.shape[-1]):
        others = torch.cat([s[..., :i], s[..., i + 1 :]], dim=-1).prod(-1)
        grads.append(ds[..., i] * others)
    return m, torch.stack(grads, -1)


class DGNO(nn.Module):
    """DGNO's generative model for Darcy-type problems on the unit square.

    Encoder ``β = E(a)`` (an MLP on the ``n x n`` coefficient grid; the paper's Dirac
    posterior), decoder ``a(x; β) = a_lo + (a_hi − a_lo)·sigmoid(MultiONet)``, decoder
    ``u(x; β) = m(x)·MultiONet(β, x)`` with the mollifier ``m`` enforcing ``u = 0`` on ``∂Ω``.
    With ``mixed=True`` (the authors' set-up for piecewise-constant coefficients) two more
    MultiONets decode the flux ``s(x; β) = (s₁, s₂) ≈ a∇u``: the weak form is then imposed on
    ``s`` and ``s = a∇u`` pointwise, so the jumps of ``∇u`` across the coefficient's
    discontinuities need not be represented by a smooth ``∇u`` alone.

    Args:
        n: coefficient grid size.
        latent: latent dimension.
        a_range: ``(a_lo, a_hi)`` bounds of the coefficient.
        width: MultiONet width.
        depth: MultiONet depth.
        mixed: also decode the flux (mixed formulation).
        activation: activation of the ``u`` (and flux) MultiONets (authors: ``tanh_sin``).
        a_activation: ``(trunk, branch)`` activations of the coefficient decoder (authors:
            ``("silu_sin", "silu_id")``).
    """

    def __init__(
        self,
        n: int,
        latent: int = 16,
        a_range: tuple[float, float] = (1.0, 10.0),
        width: int = 64,
        depth: int = 4,
        mixed: bool = False,
        activation: str = "tanh",
        a_activation: tuple[str, str] = ("tanh", "tanh"),
    ) -> None:
        super().__init__()
        if latent < 1:
            raise ValueError(f"latent must be >= 1, got {latent}")
        self.n, self.latent, self.a_range, self.mixed = n, latent, a_range, mixed
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(n * n, 128), nn.Tanh(), nn.Linear(128, latent)
        )
        self.dec_a = MultiONet(latent, 2, width, depth, *a_activation)
        self.dec_u = MultiONet(latent, 2, width, depth, activation)
        self.dec_s: nn.ModuleList | None = (
            nn.ModuleList(MultiONet(latent, 2, width, depth, activation) for _ in range(2))
            if mixed
            else None
        )

    def flux(self, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Decoded flux ``s(x; β) ≈ a∇u`` ``(B, ..., 2)`` (``mixed=True`` only).

        Args:
            beta: latents ``(B, latent)``.
            x: points ``(..., 2)``.

        Returns:
            ``(B, ..., 2)``.
        """
        if self.dec_s is None:
            raise ValueError("flux needs a DGNO built with mixed=True")
        return torch.stack([dec(beta, x) for dec in self.dec_s], dim=-1)

    def encode(self, a: torch.Tensor) -> torch.Tensor:
        """``β = E(a)``: ``(B, n, n) -> (B, latent)``.

        Args:
            a: coefficient grids ``(B, n, n)``.

        Returns:
            latents ``(B, latent)``.
        """
        a = check_floating(a, "a")
        if a.ndim != 3 or a.shape[1:] != (self.n, self.n):
            raise ValueError(f"a must have shape (B, {self.n}, {self.n}), got {tuple(a.shape)}")
        lo, hi = self.a_range
        return self.encoder((a - (lo + hi) / 2) / ((hi - lo) / 2))

    def coefficient(self, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Decoded ``a(x; β)``: ``(B, ...)`` at points ``x`` ``(..., 2)``.

        Args:
            beta: latents ``(B, latent)``.
            x: points ``(..., 2)``.

        Returns:
            ``(B, ...)``.
        """
        lo, hi = self.a_range
        return lo + (hi - lo) * torch.sigmoid(self.dec_a(beta, x))

    def solution(
        self, beta: torch.Tensor, x: torch.Tensor, with_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoded ``u(x; β)`` ``(B, ...)`` and, if asked, ``∇ₓu`` ``(B, ..., 2)``.

        Args:
            beta: latents ``(B, latent)``.
            x: points ``(..., 2)`` in the unit square.
            with_grad: also return the gradient.

        Returns:
            ``(u, grad_u)``.
        """
        v, gv = self.dec_u.value_and_grad(beta, x, with_grad)
        m, gm = _mollifier(x)
        u = m * v
        if gv is None:
            return u, None
        return u, m[..., None] * gv + gm * v[..., None]

    def forward(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The forward operator ``a ↦ u(x)``.

        Args:
            a: coefficient grids ``(B, n, n)``.
            x: points ``(..., 2)``.

        Returns:
            ``(B, ...)`` solution values.
        """
        return self.solution(self.encode(a), x)[0]


def _pde_loss(
    model: DGNO, beta: torch.Tensor, a_pts: torch.Tensor, f: float, tf: TestFunctions
) -> torch.Tensor:
    # virtual observables r_j = 0, per coefficient (B,): mean square of the weak residuals in
    # units of the source's weak form Σ w φ f (O(1) scale); in the mixed form plus the pointwise
    # constitutive residual |s − a∇u|² / f² at the quadrature points
    pts = tf.points.to(beta)
    _, gu = model.solution(beta, pts, with_grad=True)
    assert gu is not None
    norm = f * (tf.weights * tf.phi).sum(-1).to(beta)
    if not model.mixed:
        res = darcy_weak_residual(a_pts, gu, f, tf)
        return (res / norm).pow(2).mean(-1)
    s = model.flux(beta, pts)
    res = flux_weak_residual(s, f, tf)
    const = (s - a_pts[..., None] * gu).pow(2).sum(-1).mean((-2, -1)) / f**2
    return (res / norm).pow(2).mean(-1) + const


def dgno_loss(
    model: DGNO,
    a: torch.Tensor,
    tf: TestFunctions,
    *,
    f: float = 1.0,
    u_obs: torch.Tensor | None = None,
    x_obs: torch.Tensor | None = None,
    a_points: torch.Tensor | None = None,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1e-4),
) -> dict[str, torch.Tensor]:
    """DGNO's negative ELBO terms for a batch of coefficients.

    ``loss = w_a·‖a(x; β) − a‖² + w_pde·mean r_j² + w_u·‖u(x_obs; β) − u_obs‖² + w_β·½‖β‖²``
    with ``β = E(a)``; the residual uses the given coefficient at the quadrature points. For a
    ``mixed`` model the weak residuals are those of the decoded flux ``s`` and the pointwise
    constitutive residual ``mean |s − a∇u|² / f²`` is added to the PDE term.

    Args:
        model: the DGNO model.
        a: coefficient grids ``(B, n, n)``.
        tf: test functions (virtual observables).
        f: constant source.
        u_obs: labelled solution values ``(B, N)`` (``None``: unlabelled batch).
        x_obs: their points ``(N, 2)``.
        a_points: points ``(P, 2)`` where ``a`` is reconstructed (default: the grid nodes).
        weights: ``(w_a, w_pde, w_u, w_β)``.

    Returns:
        dict with ``loss`` and the terms ``recon_a``, ``pde``, ``data``, ``prior`` (terms
        with zero weight are not computed and reported as 0).
    """
    beta = model.encode(a)
    n = model.n
    if a_points is None:
        c = torch.arange(1, n + 1, dtype=a.dtype, device=a.device) / (n + 1)
        a_points = torch.cartesian_prod(c, c)
    lo, hi = model.a_range
    scale = (hi - lo) / 2
    wa, wp, wu, wb = weights
    zero = torch.zeros((), dtype=a.dtype, device=a.device)
    recon, pde = zero, zero
    # terms with zero weight are skipped (not computed)
    if wa:
        a_hat = model.coefficient(beta, a_points)
        recon = ((a_hat - grid_lookup(a, a_points)) / scale).pow(2).mean()
    if wp:
        pts = tf.points.to(a)
        pde = _pde_loss(model, beta, grid_lookup(a, pts), f, tf).mean()
    data = torch.zeros((), dtype=a.dtype, device=a.device)
    if u_obs is not None:
        if x_obs is None:
            raise ValueError("x_obs is required with u_obs")
        data = (model.solution(beta, x_obs)[0] - u_obs).pow(2).mean() / u_obs.pow(2).mean()
    prior = 0.5 * beta.pow(2).sum(-1).mean()
    loss = wa * recon + wp * pde + wu * data + wb * prior
    return {"loss": loss, "recon_a": recon, "pde": pde, "data": data, "prior": prior}


def dgno_inverse(
    model: DGNO,
    x_obs: torch.Tensor,
    u_obs: torch.Tensor,
    tf: TestFunctions,
    *,
    noise_std: float,
    f: float = 1.0,
    pde_weight: float = 1.0,
    steps: int = 300,
    lr: float = 5e-2,
    restarts: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MAP estimate of the latent ``β`` from sparse noisy observations of ``u``.

    Minimises ``‖u(x_obs; β) − u_obs‖² / (2σ²) + pde_weight·Σ r_j(β)² + ½‖β‖²`` where the
    residuals use the *decoded* coefficient ``a(x; β)`` (virtual observables; for a ``mixed``
    model also the constitutive residuals, as in :func:`dgno_loss`), by Adam from
    ``restarts`` prior draws; returns the best ``β`` ``(B, latent)``.

    Args:
        model: a trained DGNO.
        x_obs: observation points ``(N, 2)``.
        u_obs: noisy values ``(B, N)``.
        tf: test functions.
        noise_std: observation noise ``σ``.
        f: constant source.
        pde_weight: weight of the virtual observables.
        steps: Adam steps per restart.
        lr: Adam learning rate.
        restarts: random restarts (the first starts at ``β = 0``).
        generator: randomness of the restarts.

    Returns:
        ``β`` ``(B, latent)``; decode ``a`` with :meth:`DGNO.coefficient`.
    """
    check_floating(u_obs, "u_obs")
    if u_obs.ndim != 2 or u_obs.shape[1] != x_obs.shape[0]:
        raise ValueError(f"u_obs must have shape (B, {x_obs.shape[0]}), got {tuple(u_obs.shape)}")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std}")
    for p in model.parameters():
        p.requires_grad_(False)
    pts = tf.points.to(u_obs)
    n_tf = tf.points.shape[0]

    def objective(beta: torch.Tensor) -> torch.Tensor:
        u = model.solution(beta, x_obs)[0]
        pde = _pde_loss(model, beta, model.coefficient(beta, pts), f, tf)
        return (
            (u - u_obs).pow(2).sum(-1) / (2 * noise_std**2)
            + pde_weight * n_tf * pde
            + 0.5 * beta.pow(2).sum(-1)
        )

    best = torch.zeros(u_obs.shape[0], model.latent, dtype=u_obs.dtype)
    best_val = torch.full((u_obs.shape[0],), math.inf, dtype=u_obs.dtype)
    try:
        for k in range(restarts):
            init = torch.zeros_like(best)
            if k:
                init = torch.randn(best.shape, generator=generator, dtype=best.dtype)
            beta = init.clone().requires_grad_(True)
            opt = torch.optim.Adam([beta], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                objective(beta).sum().backward()
                opt.step()
            with torch.no_grad():
                val = objective(beta)
                better = val < best_val
                best[better] = beta.detach()[better]
                best_val = torch.where(better, val, best_val)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return best
